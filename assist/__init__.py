"""The assist domain, pure and synchronous: text in, what an agent sees out. The events
contract, the analysis models wrapper (engine), the playbook and its rules, the customer
directory, entities and PII masking."""
