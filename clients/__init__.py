"""Programs that talk to a callcue server from outside: the native-protocol client that streams a
recording as a live call (`callcue stream`, the tests, the benchmarks) and the Genesys AudioHook
and Twilio simulators (`callcue simulate`). They import nothing of the server."""
