"""Recording files: one per call and channel, whatever the ids (issue "Security", finding 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from live.recording import Recorder, file_name


def test_ids_that_once_shared_a_file_get_their_own(tmp_path: Path) -> None:
    long = "x" * 100
    pairs = [("victim_rec", "victim@rec"), (long + "-a", long + "-b"), ("a/../b", "a_.._b")]
    for first, second in pairs:
        assert file_name(first, 0, "customer") != file_name(second, 0, "customer")
    assert file_name("c-1", 0, "agent") != file_name("c-1", 0, "agent ")
    names = {file_name(i, 0, "customer") for i in ("c 1", "c_1", "c-1", "C-1", "c\u00e91")}
    assert len(names) == 5
    for name in names:  # a plain file name: no folder, readable start
        assert "/" not in name and name.endswith(".wav") and name[0].isalnum()
    assert file_name("c-1029", 1, "agent").startswith("c-1029-")

    one = Recorder(tmp_path, "victim_rec", ("customer",))
    other = Recorder(tmp_path, "victim@rec", ("customer",))
    one.write(np.full((1, 1600), 0.1, np.float32))
    other.write(np.full((1, 3200), -0.1, np.float32))
    one.close()
    other.close()
    assert one.paths["customer"] != other.paths["customer"]
    assert sf.info(str(one.paths["customer"])).frames == 1600
    assert sf.info(str(other.paths["customer"])).frames == 3200


def test_a_resumed_call_appends_to_its_own_file(tmp_path: Path) -> None:
    first = Recorder(tmp_path, "c-7", ("customer", "agent"))
    first.write(np.zeros((2, 800), np.float32))
    first.close()
    again = Recorder(tmp_path, "c-7", ("customer", "agent"))
    assert again.paths == first.paths
    again.write(np.zeros((2, 400), np.float32))
    again.close()
    assert sf.info(str(again.paths["agent"])).frames == 1200
    assert len(list(tmp_path.iterdir())) == 2
