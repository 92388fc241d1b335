"""Speed and memory of polyloss's multi-label losses against native and hand-ported implementations.

What is measured
----------------
Table 1, ZLPR multi-label cross-entropy (docs/multilabel.md): logits ``[N, C]`` float32 and about 1% positives,
under torch eager, ``torch.compile`` (every candidate compiled), ``jax.jit`` and ``tf.function``.
The candidates are

  (a) ``polyloss.multilabel_crossentropy(logits, labels)`` with boolean labels;
  (b) the same with float 0/1 labels;
  (c) the framework's own sigmoid binary cross-entropy with logits, summed over the classes: the
      cheapest multi-label loss a user could pick instead, so the floor to compare against;
  (d) a straightforward port of the widely copied bert4keras / Su Jianlin implementation, which
      masks with ``±1e12`` and concatenates a zero column: what users run today.

Table 2, GlobalPointer (docs/multilabel.md): logits ``[B, H, L, L]`` with the padding and lower-triangle
``-inf`` mask, ``polyloss.global_pointer_crossentropy`` on dense float labels against
``polyloss.sparse_global_pointer_crossentropy`` on ``[B, H, K, 2]`` span lists. The point of the
sparse form is memory (labels of size ``B·H·K`` instead of ``B·H·L·L``), so the label tensor
has its own column.

Why: the library computes the loss once against the array API with a hand-written gradient
(``custom_vjp``); these tables show what that costs against the fused native kernels and what it
saves against the code people copy.

How
---
- Time: every candidate is a function of ``(logits, labels)`` returning the mean loss (forward),
  or the mean loss and its gradient with respect to the logits (forward+backward:
  ``torch.autograd.grad``, ``jax.value_and_grad`` under ``jax.jit``, ``tf.GradientTape`` inside
  ``tf.function``). After warm-up calls (compilation, first touch of the allocator's pages) the
  candidates of one table and framework run round by round, in an order rotated every round, so
  that the noise of a shared machine falls on all of them alike; the tables give the median and
  the minimum per call, in milliseconds, including the wait for the result.
- Memory: one fresh subprocess per (framework, candidate) builds the inputs, runs
  forward+backward once (compiling it), resets the peak resident set size (``5`` into
  ``/proc/self/clear_refs``), reads ``VmRSS`` as the baseline, runs forward+backward once more
  and reads ``VmHWM``: the peak above the inputs, the returned gradient included (glibc and
  TensorFlow are told to give freed memory back, see ``MALLOC_MMAP_THRESHOLD``). Under ``jax.jit``
  it also reports XLA's own count of temporary buffers
  (``compile().memory_analysis().temp_size_in_bytes``).

Run ``python benchmarks/bench_multilabel.py [--quick] [--frameworks torch,jax,tensorflow]
[--repeats N]``; ``benchmarks/README.md`` explains the columns.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import dataclasses
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import polyloss  # noqa: E402

MIB = 2**20

SEED = 0  # one fixed seed: every run and every memory subprocess sees the same inputs

# warm-up calls per candidate before timing: the first compiles (jax.jit, tf.function); the next ones
# let the allocators and the thread pools reach their steady state
WARMUP_CALLS = 3

# memory subprocesses run this many at a time (the machine has 2 cores; peak RSS is per process, so
# running two together does not change what each measures)
MEMORY_WORKERS = 2
MEMORY_CHILD_TIMEOUT_S = 600

# In the memory subprocess every allocation from 64 KiB up gets its own mmap and goes back to the
# OS when freed. glibc's default raises this threshold after the first large free, and freed
# buffers would then stay resident from the warm-up call: the measured call would reuse them and
# its peak would read as zero.
MALLOC_MMAP_THRESHOLD = 64 * 1024
# For the same reason TensorFlow's memory subprocess turns oneDNN off: with it on (the default on
# x86), TensorFlow's CPU allocator is a BFC pool that never returns freed memory, so the RSS of the
# measured call would not move. Without it, buffers come from malloc. (The timings keep the default.)
TF_MEMORY_ENV = {"TF_ENABLE_ONEDNN_OPTS": "0"}

# the mask constant of the bert4keras port under test (candidate (d)), kept on purpose
PORT_MASK = 1e12

# The project's performance targets, checked at the end of the run: polyloss's forward+backward
# median within this factor of the native loss (c) ...
NATIVE_RATIO_TARGET = {"torch": 2.5, "torch.compile": 2.5, "jax": 2.0, "tensorflow": 2.0}
# ... faster than the port (d) everywhere (ratio below 1), and the sparse GlobalPointer loss using
# less memory (peak above the inputs plus the label tensor) than the dense one (ratio below 1).
BELOW_ONE = 1.0

FRAMEWORKS = ("torch", "torch.compile", "jax", "tensorflow")


@dataclasses.dataclass(frozen=True)
class Config:
    """Shapes and repetitions of one run."""

    examples: int  # N of table 1
    classes: int  # C of table 1
    positive_rate: float  # fraction of positive labels in table 1
    gp_batch: int  # B of table 2
    gp_heads: int  # H, the entity types
    gp_length: int  # L, the padded sequence length
    gp_min_length: int  # the shortest real sequence (lengths are drawn from [gp_min_length, L])
    gp_spans: int  # gold spans per example, spread over the heads
    repeats: int  # timed calls per candidate


# the brief's shapes: a large multi-label head (4096 examples x 1000 classes) and a GlobalPointer batch
FULL = Config(examples=4096, classes=1000, positive_rate=0.01, gp_batch=8, gp_heads=10, gp_length=256,
              gp_min_length=128, gp_spans=20, repeats=100)
# --quick keeps the shapes (the ratios depend on them) and takes fewer repetitions
QUICK = dataclasses.replace(FULL, repeats=8)


# --------------------------------------------------------------------------------------------
# Inputs (NumPy, converted per framework)
# --------------------------------------------------------------------------------------------
def multilabel_inputs(cfg: Config) -> dict[str, np.ndarray]:
    """Standard-normal logits ``[N, C]`` and Bernoulli(positive_rate) labels, boolean and float."""
    rng = np.random.default_rng(SEED)
    logits = rng.standard_normal((cfg.examples, cfg.classes), dtype=np.float32)
    labels = rng.random((cfg.examples, cfg.classes)) < cfg.positive_rate
    return {"logits": logits, "bool": labels, "float": labels.astype(np.float32)}


def global_pointer_inputs(cfg: Config) -> dict[str, np.ndarray]:
    """GlobalPointer logits ``[B, H, L, L]`` (``-inf`` on padding and the lower triangle), dense float
    labels of the same shape, and the same gold spans as ``[B, H, K, 2]`` padded with -1."""
    rng = np.random.default_rng(SEED + 1)
    b, h, length = cfg.gp_batch, cfg.gp_heads, cfg.gp_length
    lengths = rng.integers(cfg.gp_min_length, length, size=b, endpoint=True)
    sequence_mask = np.arange(length)[None, :] < lengths[:, None]
    span_mask = polyloss.global_pointer_mask(sequence_mask)  # [B, 1, L, L], broadcast over the heads
    scores = rng.standard_normal((b, h, length, length), dtype=np.float32)
    logits = np.where(span_mask, scores, np.float32(-np.inf)).astype(np.float32)

    gold = [[[] for _ in range(h)] for _ in range(b)]
    for i in range(b):
        chosen: set[tuple[int, int, int]] = set()
        while len(chosen) < cfg.gp_spans:
            start, end = sorted(int(v) for v in rng.integers(0, lengths[i], size=2))
            chosen.add((int(rng.integers(0, h)), start, end))
        for head, start, end in sorted(chosen):
            gold[i][head].append((start, end))
    k = max(1, max(len(spans) for row in gold for spans in row))
    spans = np.full((b, h, k, 2), -1, dtype=np.int64)
    dense = np.zeros((b, h, length, length), dtype=np.float32)
    for i in range(b):
        for head in range(h):
            for j, (start, end) in enumerate(gold[i][head]):
                spans[i, head, j] = (start, end)
                dense[i, head, start, end] = 1.0
    return {"logits": logits, "dense": dense, "spans": spans}


def bert4keras_port(y_pred, y_true, *, logsumexp, concat, zeros_like):
    """The widely copied ``multilabel_categorical_crossentropy`` of bert4keras (kexue.fm/archives/7359),
    transcribed as is: float labels, ``±1e12`` masks, a concatenated zero column, the framework's
    own log-sum-exp and autograd. Per-example loss."""
    y_pred = (1 - 2 * y_true) * y_pred
    y_pred_neg = y_pred - y_true * PORT_MASK
    y_pred_pos = y_pred - (1 - y_true) * PORT_MASK
    zeros = zeros_like(y_pred[..., :1])
    neg_loss = logsumexp(concat([y_pred_neg, zeros], -1), -1)
    pos_loss = logsumexp(concat([y_pred_pos, zeros], -1), -1)
    return neg_loss + pos_loss


@dataclasses.dataclass(frozen=True)
class Candidate:
    key: str  # "a".."d" (table 1), "dense"/"sparse" (table 2)
    name: str  # as printed
    per_example: Callable  # (logits, labels) -> per-example loss
    labels: str  # which input it takes as labels


def sparse_global_pointer(logits, spans):
    return polyloss.sparse_global_pointer_crossentropy(logits, spans, pad_index=-1)


POLYLOSS_CANDIDATES = {
    1: (Candidate("a", "(a) polyloss, bool labels", polyloss.multilabel_crossentropy, "bool"),
        Candidate("b", "(b) polyloss, float labels", polyloss.multilabel_crossentropy, "float")),
    2: (Candidate("dense", "polyloss dense, float labels", polyloss.global_pointer_crossentropy, "dense"),
        Candidate("sparse", "polyloss sparse, spans", sparse_global_pointer, "spans")),
}


# --------------------------------------------------------------------------------------------
# Frameworks
# --------------------------------------------------------------------------------------------
class Framework:
    """How one framework converts inputs, compiles, differentiates and waits for a result."""

    name = ""  # as given to --frameworks
    module = ""  # the module to import
    label = ""  # as printed
    native_name = ""  # candidate (c)
    index_dtype = np.int64  # of the GlobalPointer span lists

    def load(self) -> str:
        """Import the framework (ImportError if it cannot be); return its version line."""
        raise NotImplementedError

    def asarray(self, a: np.ndarray):
        raise NotImplementedError

    def nbytes(self, x) -> int:
        raise NotImplementedError

    def dtype_name(self, x) -> str:
        return str(x.dtype)

    def forward(self, per_example) -> Callable:
        """``(logits, labels) -> mean loss``, run without gradient tracking."""
        raise NotImplementedError

    def forward_backward(self, per_example) -> Callable:
        """``(logits, labels) -> (mean loss, d mean loss / d logits)``."""
        raise NotImplementedError

    def per_example(self, per_example) -> Callable:
        """``(logits, labels) -> per-example loss``, compiled the same way (for the agreement check)."""
        raise NotImplementedError

    def wait(self, out) -> None:
        """Block until ``out`` (the result of a call) is computed."""

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def compiled_temp_mib(self, fn, *args) -> float | None:
        """XLA's temporary buffers of ``fn`` on ``args`` (JAX only)."""
        return None

    def native(self, logits, labels):
        """Sigmoid binary cross-entropy with logits, summed over the classes: candidate (c)."""
        raise NotImplementedError

    def port(self, logits, labels):
        """Candidate (d)."""
        raise NotImplementedError

    def fastest_native(self, logits, labels):
        """Candidate (e), where the framework's library BCE is not its fastest formula (JAX: optax's)."""
        raise NotImplementedError

    has_fastest_native = False

    def candidates(self, table: int) -> list[Candidate]:
        out = list(POLYLOSS_CANDIDATES[table])
        if table == 1:
            out += [Candidate("c", f"(c) native: {self.native_name}", self.native, "float"),
                    Candidate("d", "(d) port: bert4keras, 1e12 masks", self.port, "float")]
            if self.has_fastest_native:
                out.append(Candidate("e", "(e) fastest BCE: softplus(s) - y·s", self.fastest_native, "float"))
        return out

    def inputs(self, table: int, cfg: Config) -> dict:
        host = multilabel_inputs(cfg) if table == 1 else global_pointer_inputs(cfg)
        if "spans" in host:
            host["spans"] = host["spans"].astype(self.index_dtype)
        return {k: self.asarray(v) for k, v in host.items()}


class Torch(Framework):
    name, module, label = "torch", "torch", "torch eager"
    native_name = "F.binary_cross_entropy_with_logits"

    def load(self):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"

    device = "cpu"  # --device cuda: inputs on the GPU, each call waits for the device

    def asarray(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def wait(self, out):
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def nbytes(self, x):
        return x.element_size() * x.numel()

    def dtype_name(self, x):
        return str(x.dtype).removeprefix("torch.")

    def forward(self, per_example):
        torch = self.torch

        def run(logits, labels):
            with torch.no_grad():
                return per_example(logits, labels).mean()

        return run

    def forward_backward(self, per_example):
        torch = self.torch

        def run(logits, labels):
            logits = logits.detach().requires_grad_(True)
            loss = per_example(logits, labels).mean()
            (grad,) = torch.autograd.grad(loss, logits)
            return loss.detach(), grad

        return run

    def per_example(self, per_example):
        torch = self.torch

        def run(logits, labels):
            with torch.no_grad():
                return per_example(logits, labels)

        return run

    def to_numpy(self, x):
        return x.detach().double().cpu().numpy()

    def native(self, logits, labels):
        return self.F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(-1)

    def port(self, logits, labels):
        torch = self.torch
        return bert4keras_port(logits, labels, logsumexp=torch.logsumexp, concat=torch.cat,
                               zeros_like=torch.zeros_like)


class TorchCompile(Torch):
    """Every candidate under ``torch.compile`` (inductor), native and port included: what fusion buys
    each of them. polyloss's custom autograd.Function is captured whole (no graph break)."""

    name, label = "torch.compile", "torch.compile"  # module: torch, inherited

    def _compiled(self, per_example):
        return self.torch.compile(per_example, dynamic=False)

    def forward(self, per_example):
        return super().forward(self._compiled(per_example))

    def forward_backward(self, per_example):
        return super().forward_backward(self._compiled(per_example))

    def per_example(self, per_example):
        return super().per_example(self._compiled(per_example))


class Jax(Framework):
    name, module, label = "jax", "jax", "jax.jit"
    index_dtype = np.int32  # JAX's default integer without x64

    def load(self):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.optax = None
        if importlib.util.find_spec("optax") is not None:
            import optax

            self.optax = optax
            self.native_name = "optax.sigmoid_binary_cross_entropy"
        else:
            self.native_name = "optax's formula, jax.nn.log_sigmoid"  # the load line says optax is missing
        optax_line = (f", optax {self.optax.__version__}" if self.optax else
                      ", optax not installed: (c) is optax.sigmoid_binary_cross_entropy's formula written "
                      "with jax.nn.log_sigmoid")
        return f"jax {jax.__version__} ({jax.devices()[0].platform}){optax_line}"

    def asarray(self, a):
        return self.jax.device_put(a)

    def nbytes(self, x):
        return int(x.nbytes)

    def forward(self, per_example):
        return self.jax.jit(lambda s, y: self.jnp.mean(per_example(s, y)))

    def forward_backward(self, per_example):
        return self.jax.jit(self.jax.value_and_grad(lambda s, y: self.jnp.mean(per_example(s, y))))

    def per_example(self, per_example):
        return self.jax.jit(per_example)

    def wait(self, out):
        self.jax.block_until_ready(out)

    def compiled_temp_mib(self, fn, *args):
        stats = fn.lower(*args).compile().memory_analysis()
        return None if stats is None else stats.temp_size_in_bytes / MIB

    def native(self, logits, labels):
        if self.optax is not None:
            return self.optax.sigmoid_binary_cross_entropy(logits, labels).sum(-1)
        # optax.sigmoid_binary_cross_entropy, written out
        log_p = self.jax.nn.log_sigmoid(logits)
        log_not_p = self.jax.nn.log_sigmoid(-logits)
        return (-labels * log_p - (1.0 - labels) * log_not_p).sum(-1)

    has_fastest_native = True

    def fastest_native(self, logits, labels):
        # the fastest BCE a JAX user writes: one softplus and a product, fused by XLA into one pass
        return (self.jax.nn.softplus(logits) - labels * logits).sum(-1)

    def port(self, logits, labels):
        jnp = self.jnp
        return bert4keras_port(logits, labels, logsumexp=self.jax.nn.logsumexp, concat=jnp.concatenate,
                               zeros_like=jnp.zeros_like)


class TensorFlow(Framework):
    name, module, label = "tensorflow", "tensorflow", "tf.function"
    native_name = "tf.nn.sigmoid_cross_entropy_with_logits"
    index_dtype = np.int32

    def load(self):
        import tensorflow as tf

        self.tf = tf
        # polyloss resolves its TensorFlow adapter on the first TF array it sees; resolve it here,
        # outside any trace, so that the first tf.function trace does not run the lazy import
        polyloss.get_namespace(tf.constant(0.0))
        return f"tensorflow {tf.__version__}"

    def asarray(self, a):
        return self.tf.constant(a)

    def nbytes(self, x):
        return int(x.shape.num_elements()) * x.dtype.size

    def dtype_name(self, x):
        return x.dtype.name

    def forward(self, per_example):
        return self.tf.function(lambda s, y: self.tf.reduce_mean(per_example(s, y)))

    def forward_backward(self, per_example):
        tf = self.tf

        @tf.function
        def run(logits, labels):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                loss = tf.reduce_mean(per_example(logits, labels))
            return loss, tape.gradient(loss, logits)

        return run

    def per_example(self, per_example):
        return self.tf.function(per_example)

    def wait(self, out):
        # CPU kernels have finished when the call returns; reading the loss makes sure of it
        (out[0] if isinstance(out, tuple) else out).numpy()

    def to_numpy(self, x):
        return x.numpy().astype(np.float64)

    def native(self, logits, labels):
        tf = self.tf
        return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), -1)

    def port(self, logits, labels):
        tf = self.tf
        return bert4keras_port(logits, labels, logsumexp=tf.reduce_logsumexp, concat=tf.concat,
                               zeros_like=tf.zeros_like)


ADAPTERS = {cls.name: cls for cls in (Torch, TorchCompile, Jax, TensorFlow)}


def load_framework(name: str) -> tuple[Framework | None, str]:
    """``(adapter, version line)``, or ``(None, why not)`` for a framework that cannot be imported."""
    fw = ADAPTERS[name]()
    if importlib.util.find_spec(fw.module) is None:
        return None, "not installed"
    try:
        return fw, fw.load()
    except Exception as exc:  # a broken install is reported like a missing one, not a crash
        return None, f"import failed: {type(exc).__name__}: {exc}"


def add_common_options(parser) -> None:
    """Options every benchmark script shares (``bench_classification.py``, ``bench_metrics.py`` use them too)."""
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown (benchmarks/README.md)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and TensorFlow (1 steadies the figures on a loaded machine)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda (JAX takes its default "
                        "device, the GPU where there is one); on a GPU the memory subprocesses are skipped")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")


def apply_common_options(args) -> None:
    global MARKDOWN
    MARKDOWN = args.markdown
    Torch.device = args.device
    if args.threads:
        os.environ["POLYLOSS_BENCH_THREADS"] = str(args.threads)  # memory children inherit it
    threads = os.environ.get("POLYLOSS_BENCH_THREADS")
    if threads:
        if importlib.util.find_spec("torch") is not None:
            import torch

            torch.set_num_threads(int(threads))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


# --------------------------------------------------------------------------------------------
# Timing (this process)
# --------------------------------------------------------------------------------------------
def time_interleaved(calls: dict[str, Callable[[], None]], repeats: int,
                     cpu_times: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each entry of ``calls``: warm-up calls first, then ``repeats`` rounds
    that run every entry once, in an order rotated by one each round. ``cpu_times``, when given, receives
    the process CPU seconds of each call (all threads; steadier than wall time on a loaded machine)."""
    for call in calls.values():
        for _ in range(WARMUP_CALLS):
            call()
    keys = list(calls)
    times: dict[str, list[float]] = {k: [] for k in keys}
    gc.collect()
    gc.disable()  # a collection inside a timed call would land on whichever candidate is running
    try:
        for r in range(repeats):
            shift = r % len(keys)
            for key in keys[shift:] + keys[:shift]:
                cpu = time.process_time()
                start = time.perf_counter()
                calls[key]()
                times[key].append(time.perf_counter() - start)
                if cpu_times is not None:
                    cpu_times.setdefault(key, []).append(time.process_time() - cpu)
    finally:
        gc.enable()
    return times


def run_timings(fw: Framework, table: int, cfg: Config) -> dict:
    """Forward and forward+backward times of every candidate, the per-example values (for the
    agreement check) and the label memory; a candidate that fails is reported, not fatal."""
    inputs = fw.inputs(table, cfg)
    logits = inputs["logits"]
    rows: dict[str, dict] = {}
    calls: dict[str, Callable[[], None]] = {}
    for cand in fw.candidates(table):
        labels = inputs[cand.labels]
        row = rows[cand.key] = {"name": cand.name, "label_mib": fw.nbytes(labels) / MIB,
                                "label_type": f"{fw.dtype_name(labels)} {list(labels.shape)}".replace(" ", "")}
        try:
            forward, forward_backward = fw.forward(cand.per_example), fw.forward_backward(cand.per_example)
            row["values"] = fw.to_numpy(fw.per_example(cand.per_example)(logits, labels))
            fw.wait(forward_backward(logits, labels))  # compiles, and fails here rather than mid-table
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            continue

        def call(f, labels=labels):
            fw.wait(f(logits, labels))

        calls[f"{cand.key}/fwd"] = lambda f=forward, call=call: call(f)
        calls[f"{cand.key}/fb"] = lambda f=forward_backward, call=call: call(f)
    times = time_interleaved(calls, cfg.repeats) if calls else {}
    for key, row in rows.items():
        if "error" not in row:
            row["fwd"], row["fb"] = times[f"{key}/fwd"], times[f"{key}/fb"]
    return rows


# --------------------------------------------------------------------------------------------
# Peak memory (one subprocess per framework and candidate)
# --------------------------------------------------------------------------------------------
def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(spec: str, cfg: Config) -> dict:
    """Peak RSS of one forward+backward above the inputs, in a process that holds nothing else."""
    name, table, key = spec.split(":")
    table = int(table)
    fw, why = load_framework(name)
    if fw is None:
        return {"error": why}
    cand = next(c for c in fw.candidates(table) if c.key == key)
    inputs = fw.inputs(table, cfg)
    logits, labels = inputs["logits"], inputs[cand.labels]
    del inputs
    forward_backward = fw.forward_backward(cand.per_example)
    out = forward_backward(logits, labels)  # compiles; first touch of everything it allocates
    fw.wait(out)
    del out
    result = {"xla_temp_mib": fw.compiled_temp_mib(forward_backward, logits, labels)}
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back before the baseline
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS
    except OSError as exc:
        return {**result, "error": f"cannot reset the peak RSS ({exc})"}
    baseline = _proc_status_bytes("VmRSS")
    out = forward_backward(logits, labels)
    fw.wait(out)
    peak = _proc_status_bytes("VmHWM")
    del out
    return {**result, "peak_mib": (peak - baseline) / MIB}


def measure_memory(jobs: list[str], quick: bool) -> dict[str, dict]:
    """Run ``memory_child`` for every ``framework:table:candidate`` in ``jobs``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MALLOC_MMAP_THRESHOLD_=str(MALLOC_MMAP_THRESHOLD))

    def one(spec):
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", spec] + (["--quick"] if quick else [])
        child_env = {**env, **TF_MEMORY_ENV} if spec.startswith("tensorflow:") else env
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env, timeout=MEMORY_CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {MEMORY_CHILD_TIMEOUT_S} s"}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"exit {proc.returncode}: {tail}"}
        return json.loads(lines[-1][len("RESULT "):])

    with concurrent.futures.ThreadPoolExecutor(MEMORY_WORKERS) as pool:
        return dict(zip(jobs, pool.map(one, jobs)))


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _mib(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _ratio(rows, num, den) -> tuple[str, float | None]:
    """``median ratio (min ratio)`` of the forward+backward times of rows ``num`` and ``den``."""
    a, b = rows.get(num, {}), rows.get(den, {})
    if "fb" not in a or "fb" not in b:
        return "-", None
    med = statistics.median(a["fb"]) / statistics.median(b["fb"])
    return f"{med:.2f}x ({min(a['fb']) / min(b['fb']):.2f}x)", med


# --markdown: every table printed as a Markdown table (benchmarks/README.md takes them as they are)
MARKDOWN = False


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], right_from: int) -> None:
    """Plain-text columns; those from ``right_from`` on are right-aligned (numbers). With ``MARKDOWN``, a
    Markdown table."""
    if MARKDOWN:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---:" if i >= right_from else "---" for i in range(len(header))) + "|")
        for r in rows:
            print("| " + " | ".join(c or " " for c in r) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if i >= right_from else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    print(line(header).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r).rstrip())


def _times(row) -> tuple[str, ...]:
    if "error" in row:
        return ("error",) * 4
    return (_ms(statistics.median(row["fwd"])), _ms(min(row["fwd"])),
            _ms(statistics.median(row["fb"])), _ms(min(row["fb"])))


def _memory(row) -> tuple[str, str]:
    mem = row.get("memory", {})
    peak = "error" if "peak_mib" not in mem else _mib(mem["peak_mib"])
    return peak, _mib(mem.get("xla_temp_mib"))


def _max_abs_diff(rows, a, b) -> str:
    if "values" not in rows.get(a, {}) or "values" not in rows.get(b, {}):
        return "-"
    return f"{float(np.max(np.abs(rows[a]['values'] - rows[b]['values']))):.2e}"


def _row_errors(fw, row) -> list[str]:
    """The errors a candidate's timing or memory run reported, as notes under the table."""
    out = [f"{fw.label} {row['name']}: {row['error']}"] if "error" in row else []
    if "error" in row.get("memory", {}):
        out.append(f"{fw.label} {row['name']} memory: {row['memory']['error']}")
    return out


def report_table1(cfg: Config, results: dict, frameworks: dict, targets: list) -> None:
    print(f"Table 1 - multi-label cross-entropy (ZLPR), N={cfg.examples}, C={cfg.classes}, float32, "
          f"{cfg.positive_rate:.0%} positives (seed {SEED}); ms per call over {cfg.repeats} rounds")
    header = ("framework", "candidate", "fwd med", "fwd min", "f+b med", "f+b min", "peak MiB",
              "XLA temp MiB", "f+b vs native", "f+b vs port")
    rows, notes = [], []
    for name, fw in frameworks.items():
        res = results.get(name, {}).get(1)
        if res is None:
            continue
        for i, (key, row) in enumerate(res.items()):
            vs_native = vs_port = ("", None)
            if key in ("a", "b"):
                vs_native, vs_port = _ratio(res, key, "c"), _ratio(res, key, "d")
                targets.append((f"{fw.label} ({key}) f+b vs native", vs_native[0], vs_native[1],
                                NATIVE_RATIO_TARGET[name], False))
                if "e" in res:
                    fastest = _ratio(res, key, "e")
                    targets.append((f"{fw.label} ({key}) f+b vs fastest BCE (e)", fastest[0], fastest[1], 1.0,
                                    False))
                targets.append((f"{fw.label} ({key}) f+b vs port", vs_port[0], vs_port[1], BELOW_ONE, True))
            rows.append((fw.label if i == 0 else "", row["name"], *_times(row), *_memory(row),
                         vs_native[0], vs_port[0]))
            notes += _row_errors(fw, row)
        mean_loss = float(np.mean(res["a"]["values"])) if "values" in res.get("a", {}) else float("nan")
        notes.append(f"{fw.label}: max |loss difference| per example, polyloss (a) vs port (d) "
                     f"{_max_abs_diff(res, 'a', 'd')}, (a) vs (b) {_max_abs_diff(res, 'a', 'b')} "
                     f"(mean loss {mean_loss:.4f})")
    print_table(header, rows, right_from=2)
    print()
    for n in notes:
        print(n)


def report_table2(cfg: Config, results: dict, frameworks: dict, targets: list) -> None:
    print(f"Table 2 - GlobalPointer, logits [{cfg.gp_batch}, {cfg.gp_heads}, {cfg.gp_length}, {cfg.gp_length}] "
          f"float32, sequence lengths {cfg.gp_min_length}..{cfg.gp_length}, {cfg.gp_spans} gold spans per example "
          f"(seed {SEED + 1}); ms per call over {cfg.repeats} rounds")
    header = ("framework", "candidate", "labels", "labels MiB", "fwd med", "fwd min", "f+b med", "f+b min", "peak MiB",
              "XLA temp MiB", "peak+labels MiB", "f+b sparse/dense")
    rows, notes = [], []
    for name, fw in frameworks.items():
        res = results.get(name, {}).get(2)
        if res is None:
            continue
        totals = {}
        for i, (key, row) in enumerate(res.items()):
            peak = row.get("memory", {}).get("peak_mib")
            totals[key] = None if peak is None else peak + row["label_mib"]
            ratio = _ratio(res, "sparse", "dense")[0] if key == "sparse" else ""
            label_mib = f"{row['label_mib']:.3f}" if row["label_mib"] < 1 else f"{row['label_mib']:.1f}"
            rows.append((fw.label if i == 0 else "", row["name"], row["label_type"], label_mib, *_times(row),
                         *_memory(row),
                         _mib(totals[key]), ratio))
            notes += _row_errors(fw, row)
        if None not in (totals.get("sparse"), totals.get("dense")):
            ratio = totals["sparse"] / totals["dense"]
            targets.append((f"{fw.label} GlobalPointer sparse vs dense memory (peak+labels)", f"{ratio:.2f}x",
                            ratio, BELOW_ONE, True))
        notes.append(f"{fw.label}: max |loss difference| per (example, head), dense vs sparse "
                     f"{_max_abs_diff(res, 'dense', 'sparse')}")
    print_table(header, rows, right_from=3)
    print()
    for n in notes:
        print(n)


def report_targets(targets: list) -> None:
    print("Targets (time: forward+backward ratio of the medians, judged on it, with the ratio of the minima in "
          "parentheses; memory: peak above the inputs plus the labels)")
    rows = []
    for what, shown, value, limit, strict in targets:
        bound = f"{'<' if strict else '<='} {limit:g}"
        if value is None:
            rows.append((what, shown, bound, "n/a"))
        else:
            met = value < limit if strict else value <= limit
            rows.append((what, shown, bound, "PASS" if met else "MISS"))
    print_table(("check", "ratio", "target", "result"), rows, right_from=1)


# --------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK.repeats} rounds instead of {FULL.repeats} (same shapes)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    parser.add_argument("--repeats", type=int, help="timed rounds per candidate (overrides --quick)")
    parser.add_argument("--examples", type=int, help=f"N of table 1 (default {FULL.examples})")
    parser.add_argument("--classes", type=int, help=f"C of table 1 (default {FULL.classes})")
    parser.add_argument("--tables", default="1,2", help="which tables to run (default 1,2)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # internal: framework:table:candidate
    add_common_options(parser)
    args = parser.parse_args(argv)
    apply_common_options(args)
    cfg = QUICK if args.quick else FULL
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be at least 1")
        cfg = dataclasses.replace(cfg, repeats=args.repeats)
    if args.examples or args.classes:
        cfg = dataclasses.replace(cfg, examples=args.examples or cfg.examples, classes=args.classes or cfg.classes)

    if args.memory_child:
        print("RESULT " + json.dumps(memory_child(args.memory_child, cfg)), flush=True)
        return 0
    if args.device != "cpu":
        args.no_memory = True  # the peak RSS says nothing about GPU memory

    names = [n.strip() for n in args.frameworks.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FRAMEWORKS))
    if unknown:
        parser.error(f"unknown frameworks {', '.join(unknown)}; choose from {', '.join(FRAMEWORKS)}")

    started = time.perf_counter()
    print(f"polyloss {polyloss.__version__} multi-label benchmark - Python {platform.python_version()}, "
          f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start"
          + (" (--quick)" if args.quick else ""))
    frameworks: dict[str, Framework] = {}
    for name in names:
        fw, line = load_framework(name)
        print(f"  {ADAPTERS[name].label}: {line}" + ("" if fw else " - skipped"))
        if fw is not None:
            frameworks[name] = fw
    print(flush=True)
    if not frameworks:
        print("no framework to measure")
        return 1

    results: dict[str, dict[int, dict]] = {}
    failures: list[str] = []
    for name, fw in frameworks.items():
        for table in [int(t) for t in args.tables.split(",")]:
            print(f"[{time.perf_counter() - started:4.0f} s] timing {fw.label}, table {table}",
                  file=sys.stderr, flush=True)
            try:
                results.setdefault(name, {})[table] = run_timings(fw, table, cfg)
            except Exception as exc:  # e.g. building the inputs failed: report it, go on with the rest
                failures.append(f"{fw.label}, table {table}: {type(exc).__name__}: {exc}")
            gc.collect()

    jobs = [f"{name}:{table}:{key}" for name in results for table in results[name]
            for key, row in results[name][table].items() if "error" not in row and not args.no_memory]
    print(f"[{time.perf_counter() - started:4.0f} s] peak memory: {len(jobs)} subprocesses, "
          f"{MEMORY_WORKERS} at a time", file=sys.stderr, flush=True)
    for spec, mem in measure_memory(jobs, args.quick).items():
        name, table, key = spec.split(":")
        results[name][int(table)][key]["memory"] = mem

    targets: list = []
    if any(1 in r for r in results.values()):
        report_table1(cfg, results, frameworks, targets)
        print()
    if any(2 in r for r in results.values()):
        report_table2(cfg, results, frameworks, targets)
    print()
    report_targets(targets)
    for line in failures:
        print(f"failed: {line}")
    print(f"\n{time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f} at the end "
          "(other processes on the machine widen the medians; the minima are the steadier figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
