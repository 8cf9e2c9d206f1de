"""TensorFlow's start-up noise is held back; every other line written to stderr still shows."""

import os

from util import quiet_tensorflow

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796162820.356968    6483 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "E0000 00:00:1796162944.954564    6755 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
    "error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1796162829.68 6483 cpu_feature_guard.cc:210] This TensorFlow binary is optimized "
    "to use available CPU instructions in performance-critical operations.",
]
REAL = "W0000 00:00:1.0  1 some_kernel.cc:12] a real warning about your data"


def test_noise_is_held_back_and_real_warnings_are_written_back_in_order(capfd):
    with quiet_tensorflow._stderr_without_noise(without_gpu=True):
        for line in [NOISE[0], REAL, *NOISE[1:], "second real line"]:
            os.write(2, (line + "\n").encode())
    assert capfd.readouterr().err == f"{REAL}\nsecond real line\n"


def test_cuda_lines_stay_where_a_gpu_should_be_found(capfd):
    with quiet_tensorflow._stderr_without_noise(without_gpu=False):
        for line in NOISE:
            os.write(2, (line + "\n").encode())
    assert capfd.readouterr().err == f"{NOISE[1]}\n{NOISE[2]}\n"


def test_an_empty_cuda_visible_devices_means_no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert quiet_tensorflow.no_gpu_to_find()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert quiet_tensorflow.no_gpu_to_find()


def test_per_model_inference_traces_raise_no_retracing_warning_but_others_still_do(caplog):
    import tensorflow as tf

    from model.tasks.user_vectors import inference_function
    from util.quiet_tensorflow import import_tensorflow

    import_tensorflow()
    caplog.set_level("WARNING", logger="tensorflow")
    models = [tf.keras.Sequential([tf.keras.layers.Dense(2)]) for _ in range(8)]
    for model in models:  # one function per model, each traced for two shapes
        encode = inference_function(model, "test", lambda owner, inputs: owner(inputs))
        encode(tf.ones((3, 4)))
        encode(tf.ones((5, 4)))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]

    def retraced(inputs):
        return inputs * 2

    for size in range(8):  # a real retracing problem: a new Python value every call
        tf.function(retraced)(tf.ones((size + 1, 2)))
    assert [r for r in caplog.records if "retracing" in r.getMessage()]
