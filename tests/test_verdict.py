from tasks.config import VerdictConfig
from tasks.records import Reason
from tasks.verdict import judge

GOOD = {
    "face_coverage": 1.0, "multi_face_ratio": 0.0, "face_size_px": 200, "yaw_deg": 10, "speech_ratio": 0.9,
    "num_speakers": 1, "sync_offset_frames": 1, "sync_confidence": 0.5, "sharpness": 100, "brightness": 120,
    "motion": 0.05,
}  # fmt: skip


def test_each_threshold_gives_its_reason_in_order() -> None:
    rules = VerdictConfig()
    assert judge(GOOD, rules) is None
    cases = [
        ({"face_coverage": 0.0}, Reason.NO_FACE), ({"multi_face_ratio": 0.5}, Reason.MULTI_FACE),
        ({"face_coverage": 0.5}, Reason.FACE_LOST), ({"face_size_px": 90}, Reason.FACE_TOO_SMALL),
        ({"yaw_deg": 70}, Reason.PROFILE), ({"speech_ratio": 0.1}, Reason.NO_SPEECH),
        ({"num_speakers": 2}, Reason.MULTI_SPEAKER), ({"sync_offset_frames": -9}, Reason.OUT_OF_SYNC),
        ({"sharpness": 5}, Reason.BLURRY), ({"brightness": 10}, Reason.TOO_DARK), ({"motion": 2.0}, Reason.SHAKY),
    ]  # fmt: skip
    for change, reason in cases:
        assert judge({**GOOD, **change}, rules) is reason, change
    # the order: no face outranks everything else
    assert judge({**GOOD, "face_coverage": 0.0, "speech_ratio": 0.0}, rules) is Reason.NO_FACE


def test_uncertain_sync_is_kept_or_rejected_by_policy() -> None:
    unsure = {**GOOD, "sync_offset_frames": 12, "sync_confidence": 0.1}
    assert VerdictConfig().uncertain_sync == "offset"
    assert judge(unsure, VerdictConfig()) is Reason.OUT_OF_SYNC
    assert judge({**unsure, "sync_offset_frames": 2}, VerdictConfig()) is None
    assert judge(unsure, VerdictConfig(uncertain_sync="keep")) is None
    assert judge(unsure, VerdictConfig(uncertain_sync="reject")) is Reason.OUT_OF_SYNC
    assert judge({**unsure, "sync_offset_frames": 2}, VerdictConfig(uncertain_sync="reject")) is Reason.OUT_OF_SYNC
    no_estimate = {k: v for k, v in GOOD.items() if not k.startswith("sync")}
    assert judge(no_estimate, VerdictConfig(uncertain_sync="reject")) is None
