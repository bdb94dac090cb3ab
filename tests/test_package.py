"""The package facade: every public name resolves, and ``import ssd`` leaves the heavy optional libraries unloaded."""

import subprocess
import sys

import ssd

OPTIONAL_HEAVY = ("matplotlib", "onnx", "onnxruntime", "av", "torch.utils.tensorboard")


def test_every_public_name_resolves():
    assert all(getattr(ssd, name) is not None for name in ssd.__all__)
    assert ssd.build_model("ssd300_vgg16", 3, width=0.125).num_classes == 3


def test_import_ssd_does_not_load_the_heavy_optional_libraries():
    code = f"import sys, ssd; print([m for m in {OPTIONAL_HEAVY!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
