"""Target profiles: every built-in loads and refers to converters and backends that exist."""
from __future__ import annotations

import pytest

from edgekit.benchmarks.registry import BACKENDS
from edgekit.converters.registry import CONVERTERS, PRECISIONS
from edgekit.errors import ProfileError
from edgekit.targets.loader import builtin_names, load_target
from edgekit.targets.schema import Format, IODtype, Precision


def test_generic_and_concrete_profiles_are_built_in():
    names = set(builtin_names())
    assert {"cpu", "gpu", "npu", "cpu-fp32"} <= names
    concrete = [load_target(n) for n in names if load_target(n).hardware is not None]
    assert len(concrete) >= 3
    for profile in concrete:
        assert profile.extends[0] in {"cpu", "gpu", "npu"}, profile.name
        assert profile.hardware.source


@pytest.mark.parametrize("name", builtin_names())
def test_every_profile_refers_to_real_converters_and_backends(name):
    profile = load_target(name)
    assert profile.recipes(), name
    for fmt, recipe in profile.recipes().items():
        assert fmt in CONVERTERS
        assert recipe.precision in PRECISIONS[fmt]
        assert recipe.runtime.value in BACKENDS
        assert profile.tolerance_for(fmt).min_cosine > 0


def test_generic_profiles_say_what_the_issue_asks():
    cpu, gpu, npu, fp32 = (load_target(n) for n in ("cpu", "gpu", "npu", "cpu-fp32"))
    assert all(r.precision is Precision.FP32 for r in fp32.recipes().values())
    assert all(r.precision is Precision.FP16 for r in gpu.recipes().values())
    assert all(r.precision is Precision.INT8_FULL and r.input_dtype is IODtype.INT8 and r.output_dtype is IODtype.INT8
               for r in npu.recipes().values())
    onnx = cpu.formats[Format.ONNX]
    assert onnx.per_channel and onnx.activation_type.value == "uint8"
    assert all(r.input_dtype is IODtype.FLOAT32 for r in cpu.recipes().values())
    assert all(r.precision.needs_calibration for r in cpu.recipes().values())


def test_extends_merges_and_keeps_identity():
    coral = load_target("coral-edgetpu")
    assert list(coral.recipes()) == [Format.TFLITE]
    assert coral.formats[Format.TFLITE].precision is Precision.INT8_FULL  # inherited from npu
    assert coral.formats[Format.TFLITE].input_dtype is IODtype.UINT8  # overridden
    assert coral.description != load_target("npu").description


def test_user_profile_file_extends_builtin(tmp_path):
    path = tmp_path / "my-board.toml"
    path.write_text('extends = "cpu"\ndescription = "mine"\n[formats.tflite]\nthreads = 2\n')
    profile = load_target(path)
    assert profile.name == "my-board" and profile.formats[Format.TFLITE].threads == 2
    assert profile.extends[0] == "cpu"


@pytest.mark.parametrize(
    "text, message",
    [
        ('extends = "npu"\n[formats.tflite]\nprecison = "fp32"\n', "unknown key 'formats.tflite.precison' (did you mean 'precision'?)"),
        ('extends = "npu"\n[formats.tflite]\nprecision = "int9-full"\n', "formats.tflite.precision = 'int9-full' is not accepted (did you mean 'int8-full'?)"),
        ('extends = "npu"\n[formats.tflte]\nprecision = "fp32"\n', "formats.tflte"),
        ('extends = "nopu"\n', "unknown target 'nopu' (did you mean 'npu'?)"),
        ('extends = "npu"\nthreads = [\n', "not valid TOML"),
        ('extends = "npu"\n[formats.onnx]\nthreads = 0\n', "formats.onnx.threads"),
    ],
)
def test_invalid_profile_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_target(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_builtin_suggests_close_match():
    with pytest.raises(ProfileError, match="did you mean 'cpu-fp32'"):
        load_target("cpu-fp33")


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ProfileError, match="cycle"):
        load_target(tmp_path / "a.toml")


def test_precision_override():
    profile = load_target("cpu").with_precision(Precision.FP16)
    assert {r.precision for r in profile.recipes().values()} == {Precision.FP16}
