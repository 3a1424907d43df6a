from tasks.config import VerdictConfig
from tasks.curation.verdict import early_rejection, judge
from tasks.records import Reason

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
        ({"held_pitch": 0.8}, Reason.SINGING), ({"num_speakers": 2}, Reason.MULTI_SPEAKER),
        ({"face_speaking": 0.2}, Reason.NOT_THE_SPEAKER), ({"sync_offset_frames": -9}, Reason.OUT_OF_SYNC),
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


def test_optional_metrics_and_the_calibrated_sync_rule() -> None:
    """A clip without Light-ASD or voiced speech lacks face_speaking / held_pitch (or holds None)
    and is judged on the rest; the weight-free estimate is confident by sync_z, SyncNet by its
    confidence, and an estimate too short for its null (sync_z None) never is."""
    rules = VerdictConfig()
    assert judge({**GOOD, "face_speaking": None, "held_pitch": None}, rules) is None
    far = {**GOOD, "sync_offset_frames": 4}
    assert judge({**far, "sync_confidence": 0.9, "sync_z": rules.min_sync_z - 0.1}, rules) is None
    from tasks.curation.verdict import sync_is_confident

    assert not sync_is_confident({"sync_confidence": 0.9, "sync_z": rules.min_sync_z - 0.1}, rules)
    assert sync_is_confident({"sync_confidence": 0.0, "sync_z": rules.min_sync_z}, rules)
    assert not sync_is_confident({"sync_confidence": 0.9, "sync_z": None}, rules)
    assert sync_is_confident({"sync_confidence": rules.min_sync_confidence}, rules)  # SyncNet: no sync_z


# what each stage of the analysis adds, in the order the analysis runs them
STAGES = (
    ("face_coverage", "multi_face_ratio", "face_size_px", "yaw_deg", "sharpness", "brightness", "motion"),
    ("speech_ratio", "num_speakers", "held_pitch"),
    ("face_speaking",),
    ("sync_offset_frames", "sync_confidence"),
)


def test_an_early_rejection_is_the_verdict_the_whole_analysis_gives() -> None:
    """Cheap checks first must not change a verdict: over every clip that fails one to three
    rules, a reason found on the first stages' metrics is the one `judge` gives on all of them,
    and a clip it lets through is never one `judge` rejects for an earlier stage's rule."""
    import itertools

    rules = VerdictConfig()
    failing = {"face_coverage": 0.5, "multi_face_ratio": 0.5, "face_size_px": 90, "yaw_deg": 70, "speech_ratio": 0.1,
               "held_pitch": 0.8, "num_speakers": 2, "face_speaking": 0.2, "sync_offset_frames": -9, "sharpness": 5,
               "brightness": 10, "motion": 2.0}  # fmt: skip
    stopped_early = 0
    for n in (1, 2, 3):
        for keys in itertools.combinations(failing, n):
            full = {**GOOD, "held_pitch": 0.1, "face_speaking": 0.9, **{k: failing[k] for k in keys}}
            final = judge(full, rules)
            assert final is not None
            for depth in range(1, len(STAGES) + 1):
                measured = {k: full[k] for stage in STAGES[:depth] for k in stage}
                early = early_rejection(measured, rules)
                if early is not None:
                    assert early is final, (keys, depth)
                    stopped_early += 1
                    break
    assert stopped_early > 100  # most combinations are caught before lip sync
    assert early_rejection({**GOOD, "sync_offset_frames": -9, "sharpness": 5}, rules) is None  # sync outranks blur
    assert early_rejection({"face_coverage": 0.0}, rules) is Reason.NO_FACE
