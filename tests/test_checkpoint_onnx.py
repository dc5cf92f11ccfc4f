"""ONNX reader: graphs built with onnx.helper, external data written by onnx.save_model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgegate.checkpoint import Format, ModuleKind, open_checkpoint
from edgegate.errors import CheckpointError

QW = "model.layers.0.self_attn.q_proj.weight"


def _model(tmp_path: Path, external: bool) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(4)
    b = rng.standard_normal((4, 6)).astype(np.float32)  # MatMul B: [in, out]
    b[1] = 0.0
    emb = rng.standard_normal((10, 4)).astype(np.float32)
    norm = np.array([1.0, 0.0, 1.0, 1.0], np.float16)
    bias = np.arange(6, dtype=np.float32)
    inits = [
        numpy_helper.from_array(b, "onnx::MatMul_10"),
        numpy_helper.from_array(emb, "model.embed_tokens.weight"),
        numpy_helper.from_array(norm, "onnx::Mul_5"),
        numpy_helper.from_array(bias, "model.layers.0.self_attn.q_proj.bias"),
        numpy_helper.from_array(np.array([1, 4], np.int64), "shape_const"),
        # folded constants a Mul outside any norm consumes: not weights, must not be listed
        numpy_helper.from_array(
            np.full(4, 0.5, np.float32), "/model/layers.0/self_attn/Constant_output_0"
        ),
        numpy_helper.from_array(np.ones(4, np.float32), "onnx::Mul_77"),
    ]
    nodes = [
        helper.make_node(
            "Gather",
            ["model.embed_tokens.weight", "ids"],
            ["h0"],
            name="/model/embed_tokens/Gather",
        ),
        helper.make_node("Cast", ["h0"], ["h0h"], to=TensorProto.FLOAT16, name="/model/cast/Cast"),
        helper.make_node(
            "Mul", ["h0h", "onnx::Mul_5"], ["h1h"], name="/model/layers.0/input_layernorm/Mul_1"
        ),
        helper.make_node("Cast", ["h1h"], ["h1"], to=TensorProto.FLOAT, name="/model/cast2/Cast"),
        helper.make_node("Reshape", ["h1", "shape_const"], ["h2"], name="/model/Reshape"),
        helper.make_node(
            "MatMul",
            ["h2", "onnx::MatMul_10"],
            ["h3"],
            name="/model/layers.0/self_attn/q_proj/MatMul",
        ),
        helper.make_node(
            "Add",
            ["h3", "model.layers.0.self_attn.q_proj.bias"],
            ["y"],
            name="/model/layers.0/self_attn/q_proj/Add",
        ),
        helper.make_node(
            "Mul",
            ["h2", "/model/layers.0/self_attn/Constant_output_0"],
            ["u1"],
            name="/model/layers.0/self_attn/Mul",
        ),
        helper.make_node("Mul", ["u1", "onnx::Mul_77"], ["u2"], name="/model/rotary_emb/Mul"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="model.onnx.data",
            size_threshold=64,
        )
    else:
        onnx.save_model(model, str(path))
    return path, {"b": b, "emb": emb, "norm": norm, "bias": bias}


@pytest.mark.parametrize("external", [False, True])
def test_names_transpose_values(tmp_path: Path, external: bool) -> None:
    _path, ref = _model(tmp_path, external)
    with open_checkpoint(tmp_path) as ck:
        assert ck.format is Format.ONNX
        infos = {t.canonical: t for t in ck.tensors()}
        assert set(infos) == {
            QW,
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.self_attn.q_proj.bias",
        }  # int shape constant skipped
        assert set(ck.metadata["onnx_skipped_initializers"]) == {
            "/model/layers.0/self_attn/Constant_output_0",
            "onnx::Mul_77",
        }
        q = infos[QW]
        assert q.name == "onnx::MatMul_10" and q.shape == (6, 4) and q.kind is ModuleKind.Q
        np.testing.assert_array_equal(ck.read(q), ref["b"].T)
        assert int((ck.read_native(q) == 0).sum()) == 6
        norm = infos["model.layers.0.input_layernorm.weight"]
        assert ck.read_native(norm).dtype == np.float16 and norm.kind is ModuleKind.NORM
        np.testing.assert_array_equal(ck.read(infos["model.embed_tokens.weight"]), ref["emb"])
        if external:
            assert isinstance(ck.read_native(q).base, np.memmap) or isinstance(
                ck.read_native(q), np.memmap
            )
            assert (tmp_path / "model.onnx.data") in ck.files
            assert q.file == tmp_path / "model.onnx.data"


def test_transposed_weight_reproduces_onnxruntime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path, _ref = _model(tmp_path, external=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"ids": np.array([3], np.int64)})
    ck = open_checkpoint(path)
    infos = {t.canonical: t for t in ck.tensors()}
    h = ck.read(infos["model.embed_tokens.weight"])[3] * ck.read(
        infos["model.layers.0.input_layernorm.weight"]
    )
    ours = h @ ck.read(infos[QW]).T + ck.read(infos["model.layers.0.self_attn.q_proj.bias"])
    np.testing.assert_allclose(y[0], ours, rtol=1e-3, atol=1e-3)


def test_missing_external_file(tmp_path: Path) -> None:
    _model(tmp_path, external=True)
    (tmp_path / "model.onnx.data").unlink()
    with pytest.raises(CheckpointError, match=r"external data file 'model.onnx.data' is missing"):
        open_checkpoint(tmp_path / "model.onnx")


def test_external_location_escape(tmp_path: Path) -> None:
    path, _ = _model(tmp_path, external=True)
    m = onnx.load(str(path), load_external_data=False)
    for init in m.graph.initializer:
        for e in init.external_data:
            if e.key == "location":
                e.value = "../../etc/passwd"
    onnx.save_model(m, str(path))
    with pytest.raises(CheckpointError, match=r"not a file beside the model"):
        open_checkpoint(path)


def test_external_length_lies(tmp_path: Path) -> None:
    path, _ = _model(tmp_path, external=True)
    m = onnx.load(str(path), load_external_data=False)
    init = next(i for i in m.graph.initializer if i.name == "onnx::MatMul_10")
    for e in init.external_data:
        if e.key == "offset":
            e.value = str(10**6)
    onnx.save_model(m, str(path))
    ck = open_checkpoint(path)
    q = next(t for t in ck.tensors() if t.canonical == QW)
    with pytest.raises(CheckpointError, match=r"tensor 'onnx::MatMul_10': external data \[1000000"):
        ck.read(q)


def test_garbage_file(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\xff\xfe not a protobuf \x00\x01" * 10)
    with pytest.raises(CheckpointError, match=r"model.onnx: not a readable ONNX model"):
        open_checkpoint(tmp_path)


def test_typed_field_initializers(tmp_path: Path) -> None:
    """Initializers stored in float_data / int32_data (not raw_data) read the same."""
    w32 = np.array([[0.0, 1.5], [-2.0, 0.0], [3.0, 4.0]], np.float32)  # [in=3, out=2]
    w16 = np.array([1.0, 0.0, -0.0, 2.5], np.float16)
    inits = [
        helper.make_tensor("onnx::MatMul_1", TensorProto.FLOAT, [3, 2], w32.flatten().tolist()),
        helper.make_tensor("onnx::Mul_2", TensorProto.FLOAT16, [4], w16.tolist()),
    ]
    assert not inits[0].HasField("raw_data") and len(inits[1].int32_data) == 4
    nodes = [
        helper.make_node("Mul", ["x", "onnx::Mul_2"], ["h"], name="/model/norm/Mul"),
        helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT, name="/model/Cast"),
        helper.make_node("Slice", ["hf", "s0", "s1"], ["h3"], name="/model/Slice"),
        helper.make_node("MatMul", ["h3", "onnx::MatMul_1"], ["y"], name="/lm_head/MatMul"),
    ]
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([3], np.int64), "s1"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=inits,
    )
    onnx.save_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        str(tmp_path / "model.onnx"),
    )
    ck = open_checkpoint(tmp_path)
    infos = {t.canonical: t for t in ck.tensors()}
    assert set(infos) == {"lm_head.weight", "model.norm.weight"}
    np.testing.assert_array_equal(ck.read(infos["lm_head.weight"]), w32.T)
    norm = ck.read_native(infos["model.norm.weight"])
    assert norm.dtype == np.float16 and int((norm == 0).sum()) == 2
    np.testing.assert_array_equal(norm, w16)
