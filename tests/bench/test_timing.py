"""Interleaved timing of several models: turns within each round, a median per model."""

from oddeye.bench.detection_suite import interleaved_inference_ms


def test_models_take_turns_and_each_gets_its_median():
    calls = []
    times = {"a": iter([5.0, 1.0, 3.0]), "b": iter([10.0, 30.0, 20.0])}

    def time_one(det, images):
        calls.append(det)
        assert images == ["x.png"]
        return next(times[det])

    ms = interleaved_inference_ms({"A": "a", "B": "b"}, ["x.png"], rounds=3, time_one=time_one)
    assert calls == ["a", "b"] * 3  # interleaved, not all of A's runs first
    assert ms == {"A": 3.0, "B": 20.0}
