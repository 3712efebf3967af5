#!/usr/bin/env python3
"""Adversarial check of the ``lkseg`` command line: a reproducible battery of bad inputs.

Each case builds its inputs in a fresh folder under one temporary root and runs the real CLI
(``sys.executable -m lkseg ...``, working folder = the case folder, timeout 120 s). Outcomes:
``clear error`` (non-zero exit, a message on stderr, or stdout for ``dataset check``, no "Traceback"),
``traceback``, ``wrong success`` (exit 0 on a bad input, or a file the case made or the bundled CT,
model or labels changed or vanished: sha256 before and after), ``hang`` (timeout), ``ok`` (a control
case that must succeed did), ``failed control``, ``unclear error`` (no message), ``setup failed`` (a bug
here). Prints a line per case, a table per class and the details of every case that is not clear error
or ok; exits 1 if there is one. Usage: python3 scripts/adversarial_check.py [--keep] (--keep leaves the
temporary folder, with results.json holding every case's command, exit code and output)
"""

import contextlib
import gzip
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import SimpleITK as sitk
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lkseg.checkpoint.native import read_card

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "Resources/Data/sample_ct.nii.gz"
MODEL = REPO / "Resources/Models/default_model.safetensors"
DICOM = REPO / "Testing/Data/totalsegmentator/example_ct_dicom"
SEG = REPO / "Testing/Data/totalsegmentator/example_seg.nii.gz"
CT_IMAGE = sitk.ReadImage(str(CT))
TIMEOUT = 120
STD = ("--roi", "32", "32", "32", "--steps", "2", "--val-every", "2")  # a tiny real fine-tuning run
LONG = ("--roi", "32", "32", "32", "--steps", "100000", "--val-every", "100000")
BAD = ("traceback", "wrong success", "hang", "failed control", "unclear error", "setup failed")
ROOT, ENV = Path("."), dict(os.environ)
DS = DS2 = JOB = Path("/nonexistent")  # made by control cases, used by later ones
RESULTS: list[dict] = []  # cls, name, outcome, line, secs, cmd, rc, out, err, note


# --------------------------------------------------------------------------- running and judging
def lk(*args) -> list[str]:
    return [sys.executable, "-m", "lkseg", *(str(a) for a in args)]

def seg(inp, *extra, out="out", ckpt=MODEL) -> list[str]:
    return lk("segment", *(inp if isinstance(inp, list) else [inp]), "-m", ckpt, "-o", out, "--device", "cpu", *extra)

def ft(*extra, out="job", dataset=None, ckpt=MODEL) -> list[str]:
    return lk("finetune", "--dataset", dataset or DS, "--checkpoint", ckpt, "--out", out, "--device", "cpu", *extra)

def run_cli(argv, cwd):
    """(exit code, None on timeout; stdout; stderr)."""
    try:
        p = subprocess.run(argv, cwd=cwd, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        return None, (exc.stdout or b"").decode(errors="replace"), (exc.stderr or b"").decode(errors="replace")

def sha_all(paths) -> dict[str, str]:
    """sha256 of every file at or under ``paths``."""
    files = [q for p in map(Path, paths) for q in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(q): hashlib.sha256(q.read_bytes()).hexdigest() for q in files if q.is_file()}

def first_line(err: str, out: str, outcome: str) -> str:
    """What happened: a traceback's exception, else the first error (for ok: warning) line."""
    lines = [ln.strip().replace(f"{ROOT}/", "") for ln in (err + "\n" + out).splitlines() if ln.strip()]
    if outcome == "traceback":
        return lines[-1][:200]
    keys = ("NaN", "WARNING", "warning") if outcome == "ok" else ("lkseg: error", "error", "lkseg:")
    return next((ln for k in keys for ln in lines if k in ln), lines[0] if lines else "")[:200]

def record(**r) -> None:
    RESULTS.append(r)
    print(f"{r['cls']:<9} {r['name']:<46} {r['outcome']:<14} {r['secs']:>4.0f}s  {r['line']}", flush=True)

def case(cls, name, build, expect="error", check=None, watch=(), msg_stdout=False) -> Path:
    """Build a case in a fresh folder (``build(folder)`` returns the argv), run it, classify it.
    ``check(folder, rc, stdout, stderr)`` may return a reason that makes it a wrong success."""
    d = ROOT / f"{len(RESULTS) + 1:03d}-{cls}-{''.join(c if c.isalnum() else '_' for c in name)[:40]}"
    d.mkdir()
    try:
        argv = build(d)
    except Exception as exc:  # noqa: BLE001 - a broken case must show, not stop the battery
        record(cls=cls, name=name, outcome="setup failed", line=f"{type(exc).__name__}: {exc}", secs=0, cmd="",
               rc=None, out="", err="", note="")
        return d
    watched = [d, CT, MODEL, SEG, *watch]
    before, start = sha_all(watched), time.monotonic()
    rc, out, err = run_cli(argv, d)
    secs, after = time.monotonic() - start, sha_all(watched)
    changed = [os.path.relpath(p, ROOT) for p, h in before.items() if after.get(p) != h]
    note = f"changed or removed: {', '.join(changed)}" if changed else ""
    if rc is None:
        outcome = "hang"
    elif "Traceback" in out + err:
        outcome = "traceback"
    elif changed:
        outcome = "wrong success"
    elif expect == "ok":
        outcome = "ok" if rc == 0 else "failed control"
    elif rc == 0:
        outcome, note = "wrong success", "exit 0 on a bad input"
    else:
        outcome = "clear error" if err.strip() or (msg_stdout and out.strip()) else "unclear error"
    reason = check(d, rc, out, err) if check and outcome not in ("hang", "failed control") else None
    if reason:
        outcome = "traceback" if outcome == "traceback" else "wrong success"
        note = "; ".join(filter(None, [note, reason]))
    record(cls=cls, name=name, outcome=outcome, line=first_line(err, out, outcome), secs=secs,
           cmd=f"cd {d} && {shlex.join(argv)}", rc=rc, out=out, err=err, note=note)
    return d


# --------------------------------------------------------------------------- building hostile inputs
def mk(path: Path, data: str | bytes | None = None) -> Path:
    """A new folder (``data`` None) or a file holding ``data`` (its folder made as needed); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir() if data is None else path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path

def save(img, path: Path) -> Path:
    """Write an image (or a numpy array, z-y-x) with SimpleITK; returns ``path``."""
    sitk.WriteImage(img if isinstance(img, sitk.Image) else sitk.GetImageFromArray(img), str(path))
    return path

def with_nan(path: Path, fraction: float) -> Path:
    """The CT as float32 with ``fraction`` of its voxels (seeded choice) set to NaN."""
    a = sitk.GetArrayFromImage(CT_IMAGE).astype(np.float32)
    a[np.random.default_rng(0).random(a.shape) < fraction] = np.nan
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(CT_IMAGE)
    return save(img, path)

def organ(path: Path, ts_value: int, spacing=None) -> Path:
    """TotalSegmentator label ``ts_value`` of the example labels as a 0/1 map (optionally re-spaced)."""
    ref = sitk.ReadImage(str(SEG))
    img = sitk.GetImageFromArray((sitk.GetArrayFromImage(ref) == ts_value).astype(np.uint8))
    img.CopyInformation(ref)
    img.SetSpacing(spacing or ref.GetSpacing())
    return save(img, path)

def cut(src, dst: Path, keep: int) -> Path:
    """The first ``keep`` bytes of ``src`` (negative: all but the last ``-keep``)."""
    return mk(dst, Path(src).read_bytes()[:keep])

def flip(src, dst: Path, offset: int) -> Path:
    data = Path(src).read_bytes()
    return mk(dst, data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:])

def huge_header(path: Path) -> Path:
    """A small .nii.gz whose header claims 20000^3 voxels."""
    raw = bytearray(save(CT_IMAGE, path.with_suffix("")).read_bytes())
    raw[42:48] = np.array([20000, 20000, 20000], "<i2").tobytes()  # dim[1..3] of the NIfTI-1 header
    path.with_suffix("").unlink()
    return mk(path, gzip.compress(bytes(raw)))

def dicom(d: Path, damage) -> list[str]:
    """``segment`` of a copy of the DICOM series (20 files) after ``damage(its files in slice order)``."""
    folder = Path(shutil.copytree(DICOM, d / "dicom"))
    damage(list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))))
    return seg(folder)

def ckpt(path: Path, card_edit=None, tensor_edit=None, with_card=True) -> Path:
    """A checkpoint made of the default model's tensors and card, edited."""
    with safe_open(str(MODEL), framework="pt") as f:
        tensors = {k: (tensor_edit or (lambda t: t))(f.get_tensor(k)) for k in f.keys()}
    card = json.loads(read_card(MODEL).to_json())
    if card_edit:
        card_edit(card)
    save_file(tensors, str(path), metadata={"lkseg_card": json.dumps(card), "format": "pt"} if with_card else None)
    return path

def flipped_weights(path: Path) -> Path:
    head = 8 + int.from_bytes(MODEL.read_bytes()[:8], "little")  # safetensors: u64 header size, header, data
    return flip(MODEL, path, head + (MODEL.stat().st_size - head) // 2)

def pth(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    return path

def card(d: Path) -> Path:
    return mk(d / "card.json", read_card(MODEL).to_json())

def cmdline_has(folder: Path) -> list[int]:
    """Processes (other than this one) whose command line names ``folder``."""
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if str(folder) in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()]

def state_of(job: Path, wait_for: str = "", seconds: float = 0) -> str | None:
    """The job's state in status.json, waiting up to ``seconds`` for ``wait_for``."""
    for _ in range(int(seconds) + 1):
        state = json.loads((job / "status.json").read_text() if (job / "status.json").is_file() else "{}").get("state")
        if state == wait_for:
            break
        time.sleep(1)
    return state

CARD_EDITS = {  # hostile model cards: the default card with one field changed
    "labels '/etc/passwd'": lambda card: card.update(labels="/etc/passwd"),
    "roi_size 100000^3": lambda card: card["inference"].update(roi_size=[100000, 100000, 100000]),
    "feat_size up to 32768": lambda card: card["hyperparameters"].update(feat_size=[4096, 8192, 16384, 32768]),
    "architecture 'nosuch'": lambda card: card.update(architecture="nosuch"),
}
WEIGHT_DAMAGE = {
    "all-NaN weights": lambda p: ckpt(p, tensor_edit=lambda t: t.clone().fill_(float("nan"))),
    "flipped bytes in the weights": flipped_weights,
}
EVIL = "cos\nsystem\n(S'touch {}/PWNED'\ntR."  # a protocol-0 pickle: loading it runs os.system("touch ...")


# --------------------------------------------------------------------------- the cases
def files(c="files") -> None:
    case(c, "missing file", lambda d: seg(d / "nope.nii.gz"))
    case(c, "empty file", lambda d: seg(mk(d / "empty.nii.gz", b"")))
    case(c, "truncated .nii.gz (first half)", lambda d: seg(cut(CT, d / "half.nii.gz", CT.stat().st_size // 2)))
    case(c, "corrupted byte in the gzip stream", lambda d: seg(flip(CT, d / "flip.nii.gz", CT.stat().st_size // 2)))
    case(c, ".nii truncated by 1000 bytes", lambda d: seg(cut(save(CT_IMAGE, d / "ct.nii"), d / "short.nii", -1000)))
    case(c, "text file named .nii.gz", lambda d: seg(mk(d / "t.nii.gz", "not an image\n")))
    case(c, "2D image", lambda d: seg(save(np.zeros((64, 64), np.int16), d / "flat.nii.gz")))
    case(c, "4D image, 2 time points", lambda d: seg(save(sitk.JoinSeries([CT_IMAGE] * 2), d / "4d.nii.gz")))
    case(c, "vector (RGB) image", lambda d: seg(save(sitk.Compose([CT_IMAGE] * 3), d / "rgb.mha")))
    case(c, "header claims 20000^3 voxels", lambda d: seg(huge_header(d / "huge.nii.gz")))
    case(c, "folder with no images", lambda d: seg(mk(d / "empty")))
    case(c, "DICOM folder, one slice removed", lambda d: dicom(d, lambda f: os.remove(f[9])))
    case(c, "DICOM folder, one file truncated", lambda d: dicom(d, lambda f: cut(f[9], Path(f[9]), -5000)))
    for suffix in (".nii.gz", ".mha"):  # must succeed and say so on stderr
        case(c, f"1% NaN voxels ({suffix})", lambda d, x=suffix: seg(with_nan(d / f"holes{x}", 0.01)), expect="ok",
             check=lambda d, rc, out, err: None if "NaN" in err else "exit 0 without a NaN warning on stderr")
    case(c, "every voxel NaN (.mha)", lambda d: seg(with_nan(d / "void.mha", 1.1)))
    case(c, "control: segment the CT", lambda d: seg(CT), expect="ok")
    case(c, "control: segment the DICOM folder", lambda d: seg(DICOM), expect="ok")
    case(c, "folder: one good + one truncated image", lambda d: seg(
        (mk(d / "in/good.nii.gz", CT.read_bytes()), cut(CT, d / "in/bad.nii.gz", CT.stat().st_size // 2))[0].parent),
        check=lambda d, rc, out, err: None if (d / "out/good_seg.nii.gz").is_file() else "good input not written")

def outputs(c="outputs") -> None:
    case(c, "-o equal to the input", lambda d: seg(shutil.copy(CT, d / "ct.nii.gz"), out=d / "ct.nii.gz"))
    for target, extra in (("ref.nii.gz", []), ("./ref.nii.gz", ["--overwrite"]), ("pred.nii.gz", [])):
        case(c, f"evaluate --json {target} {' '.join(extra)}".strip(), lambda d, t=target, e=extra: (
            shutil.copy(SEG, d / "pred.nii.gz"), shutil.copy(SEG, d / "ref.nii.gz"),
            lk("evaluate", "pred.nii.gz", "--reference", "ref.nii.gz", "--json", t, *e))[-1])
    case(c, "-o existing file without --overwrite", lambda d: seg(CT, out=mk(d / "labels.nii.gz", "user's own")))
    case(c, "--volumes: existing CSV, no --overwrite", lambda d: (mk(d / "out/sample_ct_seg_volumes.csv", "mine"),
                                                                  seg(CT, "--volumes"))[-1])
    case(c, "-o inside a folder that is a file", lambda d: seg(CT, out=mk(d / "afile", "x") / "l.nii.gz"))
    case(c, "-o an existing file for two inputs", lambda d: seg([CT, DICOM], out=mk(d / "afile", "x")))
    case(c, "-o an existing folder named x.nii.gz", lambda d: seg(CT, out=mk(d / "x.nii.gz")))
    case(c, "two inputs with the same name, one folder", lambda d: seg(
        [shutil.copy(CT, mk(d / sub) / "ct.nii.gz") for sub in "ab"]), expect="ok",
        check=lambda d, rc, out, err: None if len(list((d / "out").glob("*_seg.nii.gz"))) == 2 else "not 2 outputs")
    case(c, "import -o equal to the weights, --force", lambda d: lk(
        "import", shutil.copy(MODEL, d / "w.safetensors"), "--card", card(d), "-o", "w.safetensors", "--force"))

def checkpoints(c="ckpt") -> None:
    case(c, "segment: missing checkpoint", lambda d: seg(CT, ckpt=d / "none.safetensors"))
    case(c, "segment: empty checkpoint", lambda d: seg(CT, ckpt=mk(d / "e.safetensors", b"")))
    case(c, "segment: .pth pickle (torch.save dict)", lambda d: seg(CT, ckpt=pth(d / "m.pth")))
    case(c, "import: .pth with keys of no network", lambda d: lk(
        "import", pth(d / "m.pth"), "--card", card(d), "-o", "out.safetensors"))
    case(c, "import: pickle that runs code", lambda d: lk(
        "import", mk(d / "evil.pth", EVIL.format(d)), "--card", card(d), "-o", "out.safetensors"),
        check=lambda d, rc, out, err: "the pickle ran code (PWNED exists)" if (d / "PWNED").exists() else None)
    case(c, "segment: random bytes", lambda d: seg(CT, ckpt=mk(d / "r.safetensors",
                                                               np.random.default_rng(1).bytes(100_000))))
    case(c, "segment: truncated safetensors", lambda d: seg(CT, ckpt=cut(MODEL, d / "h.safetensors", 2_000_000)))
    case(c, "segment: safetensors without a card", lambda d: seg(CT, ckpt=ckpt(d / "n.safetensors", with_card=False)))
    for cmd, run in (("info", lambda p: lk("info", p)), ("segment", lambda p: seg(CT, ckpt=p))):
        for what, edit in CARD_EDITS.items():
            case(c, f"{cmd}: card {what}", lambda d, run=run, edit=edit: run(ckpt(d / "c.safetensors", edit)))
    for what, make in WEIGHT_DAMAGE.items():
        case(c, f"info --check: {what}", lambda d, make=make: lk("info", make(d / "w.safetensors"), "--check"))
        case(c, f"segment: {what}", lambda d, make=make: seg(CT, ckpt=make(d / "w.safetensors")))
    case(c, "segment: checkpoint is a folder", lambda d: seg(CT, ckpt=mk(d / "m")))
    case(c, "control: info --check default model", lambda d: lk("info", MODEL, "--check"), expect="ok")

def add(d: Path, lab, ds="ds", organ_name: str | None = "liver", *extra) -> list[str]:
    """``dataset add`` of the CT and ``lab``, with a one-organ label table unless ``organ_name`` is None."""
    table = {"name": f"{organ_name} only", "labels": [{"value": 1, "name": organ_name}]}
    labels = ["--labels", mk(d / "t.json", json.dumps(table))] if organ_name else []
    return lk("dataset", "add", CT, lab, "--dataset", ds, *labels, *extra)

def escaping(d: Path) -> Path:
    """A copy of DS whose dataset.json lists files outside the dataset folder and missing files."""
    shutil.copytree(DS, d / "ds")
    shutil.copy(SEG, d / "outside.nii.gz")
    data = json.loads((d / "ds/dataset.json").read_text())
    data["training"] += [{"image": "./imagesTr/../../outside.nii.gz", "label": "./labelsTr/../../outside.nii.gz"},
                         {"image": "./imagesTr/case_0009_0000.nii.gz", "label": "./labelsTr/case_0009.nii.gz"}]
    data["numTraining"] = len(data["training"])
    return mk(d / "ds/dataset.json", json.dumps(data)).parent

def datasets(c="datasets") -> None:
    global DS, DS2
    DS = case(c, "control: dataset add CT + liver", lambda d: add(d, organ(d / "liver.nii.gz", 5)), expect="ok") / "ds"
    DS2 = case(c, "control: dataset add CT + spleen", lambda d: add(d, organ(d / "spleen.nii.gz", 1), "ds", "spleen"),
               expect="ok") / "ds"
    case(c, "add: labels of another size", lambda d: add(d, save(
        sitk.ReadImage(str(organ(d / "l.nii.gz", 5)))[:60, :, :], d / "small.nii.gz")))
    case(c, "add: labels with another spacing", lambda d: add(d, organ(d / "l.nii.gz", 5, (2.0,) * 3)))
    case(c, "add: label values not in the table", lambda d: add(d, SEG))
    case(c, "add: --case-id ../evil", lambda d: add(d, organ(d / "l.nii.gz", 5), "ds", "liver", "--case-id", "../evil"),
         check=lambda d, rc, out, err: "wrote outside the dataset" if list(d.glob("evil*")) else None)
    case(c, "check: ../ paths and missing files", lambda d: lk("dataset", "check", escaping(d)), msg_stdout=True)
    case(c, "finetune on that dataset", lambda d: ft(*STD, dataset=escaping(d)))
    damaged = lambda d: mk(Path(shutil.copytree(DS, d / "ds")) / "dataset.json", "{ not json").parent  # noqa: E731
    case(c, "check: damaged dataset.json", lambda d: lk("dataset", "check", damaged(d)), msg_stdout=True)
    case(c, "add: into a damaged dataset", lambda d: add(d, organ(d / "l.nii.gz", 5), damaged(d), None))

def numbers(c="numbers") -> None:
    for flags in (["--batch-size", "0"], ["--lr", "-1"], ["--steps", "0"], ["--minutes", "nan"],
                  ["--val-fraction", "1.5"], ["--roi", "16", "0", "16"], ["--roi", "16", "16"]):
        case(c, "finetune " + " ".join(flags), lambda d, f=flags: ft(*f), watch=(DS,))
    case(c, "segment --sw-batch-size 0", lambda d: seg(CT, "--sw-batch-size", "0"))
    case(c, "segment --device cuda (none here)", lambda d: seg(CT, "--device", "cuda"))
    case(c, "models --out-channels 0", lambda d: lk("models", "--out-channels", "0"))

def finetune_folders(c="ftfolder") -> None:
    global JOB
    JOB = case(c, "control: 2-step finetune into JOB", lambda d: ft(*STD), expect="ok", watch=(DS,)) / "job"
    job = lambda d: shutil.copytree(JOB, d / "job")  # noqa: E731 - every case gets its own copy of JOB
    case(c, "--checkpoint JOB/best --out JOB", lambda d: (
        job(d), ft(*STD, ckpt=d / "job/checkpoints/best.safetensors"))[1], watch=(DS,))
    case(c, "--out holds a foreign best.safetensors", lambda d: (
        mk(d / "job/checkpoints/best.safetensors", MODEL.read_bytes()), ft(*STD))[-1], watch=(DS,))
    case(c, "rerun with another dataset, same --out", lambda d: (job(d), ft(*STD, dataset=DS2))[1], watch=(DS, DS2))
    case(c, "--out is a file", lambda d: ft(*STD, out=mk(d / "f", "x")), watch=(DS,))
    case(c, "dataset label the model does not predict", lambda d: (
        run_cli(add(d, organ(d / "l.nii.gz", 5), "ds", "tumour"), d), ft(*STD, dataset=d / "ds"))[1])
    case(c, "control: rerun the finished run (resume)", lambda d: (job(d), ft(*STD))[1], expect="ok", watch=(DS,))

def jobs(c="jobs") -> None:
    for action in ("status", "cancel", "resume"):
        case(c, f"{action} of a folder that is not a job", lambda d, a=action: lk("jobs", a, mk(d / "x")))
    case(c, "status: damaged status.json", lambda d: lk("jobs", "status", (
        mk(d / "job/job.json", "{}"), mk(d / "job/status.json", "{ not json"))[0].parent))
    case(c, "list: ROOT is a file", lambda d: lk("jobs", "list", mk(d / "f", "x")))
    bg = case(c, "control: start a long background job", lambda d: ft(*LONG, "--background", out="bg"), expect="ok",
              check=lambda d, rc, out, err: None if state_of(d / "bg", "running", 90) == "running"
              else f"state {state_of(d / 'bg')!r}, not 'running' after 90 s") / "bg"
    case(c, "resume of a running job", lambda d: lk("jobs", "resume", bg))
    case(c, "finetune --background into a running job", lambda d: ft(*LONG, "--background", out=bg))
    case(c, "finetune (foreground) into a running job", lambda d: ft(*LONG, out=bg))
    case(c, "control: cancel the running job", lambda d: lk("jobs", "cancel", bg), expect="ok",
         check=lambda d, rc, out, err: f"still running: pids {cmdline_has(bg)}" if cmdline_has(bg) else None)
    case(c, "control: status of the cancelled job", lambda d: lk("jobs", "status", bg), expect="ok",
         check=lambda d, rc, out, err: None if state_of(bg) == "cancelled" else f"state {state_of(bg)!r}")


# --------------------------------------------------------------------------- report
def summary() -> int:
    shown = ["ok", "clear error", *BAD[:3], *(o for o in BAD[3:] if any(r["outcome"] == o for r in RESULTS))]
    print(f"\n{'class':<9} " + " ".join(f"{o:>14}" for o in shown) + f" {'total':>6}")
    for cls in [*dict.fromkeys(r["cls"] for r in RESULTS), "ALL"]:
        rows = [r["outcome"] for r in RESULTS if cls in ("ALL", r["cls"])]
        print(f"{cls:<9} " + " ".join(f"{rows.count(o):>14}" for o in shown) + f" {len(rows):>6}")
    for r in (r for r in RESULTS if r["outcome"] not in ("ok", "clear error")):
        print(f"\n=== [{r['outcome']}] {r['cls']} / {r['name']}" + (f"  ({r['note']})" if r["note"] else ""))
        print(f"command: {r['cmd']}\nexit: {r['rc']}")
        for label, text, n in (("stdout", r["out"], 12), ("stderr", r["err"], 30)):
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                print(f"--- {label} (last {min(n, len(lines))} of {len(lines)} lines)\n" + "\n".join(lines[-n:]))
    return 1 if any(r["outcome"] in BAD for r in RESULTS) else 0

def main() -> int:
    global ROOT
    ROOT = Path(tempfile.mkdtemp(prefix="lkseg-adversarial-")).resolve()
    ENV.update(LKSEG_HOME=str(ROOT / "home"), PYTHONUNBUFFERED="1")
    start = time.monotonic()
    print(f"temporary folder: {ROOT}\n{'class':<9} {'case':<46} {'outcome':<14} {'time':>5}  first line", flush=True)
    try:
        for group in (files, outputs, checkpoints, datasets, numbers, finetune_folders, jobs):
            group()
    finally:
        (ROOT / "results.json").write_text(json.dumps(RESULTS, indent=1))  # every case: command, exit, output
        for pid in cmdline_has(ROOT):  # only processes this battery started: their command lines name ROOT
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
                print(f"killed leftover process {pid}")
        if "--keep" not in sys.argv[1:]:  # --keep: leave the temporary folder for inspection
            shutil.rmtree(ROOT, ignore_errors=True)
    code = summary()
    print(f"\n{len(RESULTS)} cases in {time.monotonic() - start:.0f} s; exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
