"""One training run (the body of :func:`lkseg.training.train`): model and card, data, optimiser,
resume, the step loop, validation and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from lkseg.errors import Cancelled, LkSegError
from lkseg.training.config import DEFAULT_STEPS
from lkseg.training.crops import CropSampler, load_cases, split_cases
from lkseg.training.distributed import DistInfo, barrier, broadcast_object, mean_over_ranks
from lkseg.training.loop import (
    ProgressLog,
    TimeBudget,
    Timer,
    atomic_torch_save,
    deep_supervision_loss,
    dice_per_label,
    float_outputs,
    load_resume,
    main_output,
    plot_curves,
    rng_state,
    set_rng_state,
    state_dict_sha256,
    unfold_repuxnet,
    warmup_cosine,
)
from lkseg.utils.devices import training_autocast_dtype

log = logging.getLogger(__name__)

DEFAULT_WINDOW = {"mode": "window", "a_min": -125.0, "a_max": 275.0, "b_min": 0.0, "b_max": 1.0, "clip": True}


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split()).casefold()


class Run:
    def __init__(self, cfg: Any, device: torch.device, dist: DistInfo, progress: Any, cancel: Any) -> None:
        self.cfg, self.device, self.dist = cfg, device, dist
        self.progress_fn, self.cancel = progress, cancel
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.best_path = self.ckpt_dir / "best.safetensors"
        self.last_path = self.ckpt_dir / "last.safetensors"
        self.resume_path = self.ckpt_dir / "resume.pt"
        self.log = ProgressLog(self.out / "progress.jsonl", enabled=dist.is_main)

    # ------------------------------------------------------------------ set-up
    def run(self) -> Path:
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        elif self.dist.world_size > 1 and self.device.type == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads() // self.dist.world_size))
        if cfg.deterministic:
            torch.backends.cudnn.benchmark = False
        if self.dist.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        barrier(self.dist)

        from lkseg.dataset.local import LocalDataset

        self.dataset = LocalDataset(cfg.dataset)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self._build_model()
        self._prepare_data()

        self.total_steps = cfg.steps or (DEFAULT_STEPS if cfg.minutes is None else 10**9)
        self.time_limited = cfg.minutes is not None
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else (
            10 if self.time_limited else min(50, max(1, self.total_steps // 10)))
        lr = cfg.lr if cfg.lr is not None else (1e-4 if cfg.checkpoint else 1e-3)
        self.lr = lr
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(lambda: self.total_steps, warmup))
        from monai.losses import DiceCELoss

        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        self.step, self.best_dice, self.best_step, self.elapsed = 0, -1.0, None, 0.0
        self.stopped_early: int | None = None
        self.last_val: dict | None = None
        if self._resume():
            return self.best_path
        previous = torch.are_deterministic_algorithms_enabled()
        try:
            if cfg.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
            return self._loop()
        finally:
            torch.use_deterministic_algorithms(previous)

    def _build_model(self) -> None:
        from lkseg import checkpoint as ck
        from lkseg.checkpoint import card as cardmod
        from lkseg.dataset.label_tables import load_label_table

        cfg = self.cfg
        self.parent_sha = None
        if cfg.checkpoint is not None:
            if not cfg.checkpoint.is_file():
                raise LkSegError(f"--checkpoint {cfg.checkpoint} does not exist")
            model, card = ck.load_checkpoint(cfg.checkpoint, device="cpu")
            self.parent_sha = ck.file_sha256(cfg.checkpoint)
            if cfg.upkern_from is not None:
                raise LkSegError("--upkern-from starts a new kernel-5 MedNeXt: use it with --architecture mednext "
                                 "(not with --checkpoint)")
        else:
            from lkseg.models.registry import get_spec

            spec = get_spec(cfg.architecture)
            small_card = ck.read_card(cfg.upkern_from) if cfg.upkern_from is not None else None
            if small_card is not None:  # UpKern: the kernel-3 model's settings with kernel 5
                table = load_label_table(cfg.labels) if cfg.labels else small_card.labels
                hp = {**small_card.hyperparameters, "kernel_size": 5}
                pre, inf = small_card.preprocessing, small_card.inference
            else:
                table = load_label_table(cfg.labels) if cfg.labels else self.dataset.table
                hp = dict(spec.paper_config)
                if cfg.model_config == "small":
                    hp.update(spec.small_config)
                pre = cardmod.Preprocessing(spacing=tuple(cfg.spacing) if cfg.spacing else None,
                                            intensity=dict(cfg.intensity or DEFAULT_WINDOW))
                inf = cardmod.InferenceSettings()
            hp.update(cfg.hparams or {})
            if cfg.spacing and small_card is not None:
                pre = dataclasses.replace(pre, spacing=tuple(cfg.spacing))
            model = spec.constructor(in_channels=1, out_channels=table.num_classes, **hp)
            card = cardmod.ModelCard(architecture=cfg.architecture, hyperparameters=hp, in_channels=1, labels=table,
                                     preprocessing=pre, inference=inf, provenance=cardmod.Provenance())
            if cfg.upkern_from is not None:
                model = self._upkern(model, card)
        if card.architecture == "repuxnet":
            card = unfold_repuxnet(model, card)
        self.roi = tuple(cfg.roi) if cfg.roi else tuple(card.inference.roi_size)
        if tuple(card.inference.roi_size) != self.roi:
            card = dataclasses.replace(card, inference=dataclasses.replace(card.inference, roi_size=self.roi))
        self.card = card
        self.model = model.to(self.device).train()
        self.net = self.model  # replaced by the DDP wrapper in _loop

    def _upkern(self, model: torch.nn.Module, card: Any) -> torch.nn.Module:
        from lkseg import checkpoint as ck
        from lkseg.models.upkern import upkern_from

        if card.architecture != "mednext":
            raise LkSegError(f"--upkern-from works for MedNeXt only; this run trains {card.architecture!r}")
        small, _ = ck.load_checkpoint(self.cfg.upkern_from, device="cpu")
        upkern_from(small, model)
        self.parent_sha = ck.file_sha256(self.cfg.upkern_from)
        log.info("initialised the kernel-%s MedNeXt from %s with UpKern", card.hyperparameters.get("kernel_size"),
                 self.cfg.upkern_from)
        return model

    def _prepare_data(self) -> None:
        cfg = self.cfg
        ds_table, model_table = self.dataset.table, self.card.labels
        by_name = {_norm(lab.name): int(lab.value) for lab in model_table.labels}
        missing = [lab.name for lab in ds_table.labels if _norm(lab.name) not in by_name]
        if missing:
            raise LkSegError(f"the dataset {cfg.dataset} has labels {missing} that the model does not predict "
                             f"(it predicts {', '.join(model_table.names)}); train from scratch with "
                             "--architecture and --labels, or relabel the cases")
        self.value_map = {int(lab.value): by_name[_norm(lab.name)] for lab in ds_table.labels}
        self.label_values = [int(v) for v in model_table.values]
        self.label_names = {int(lab.value): lab.name for lab in model_table.labels}
        ids = self.dataset.cases()
        self.train_ids, self.val_ids, self.split_note = split_cases(ids, cfg.val_cases, cfg.val_fraction)
        mine = self.train_ids
        if self.dist.world_size > 1 and len(self.train_ids) >= self.dist.world_size:
            mine = self.train_ids[self.dist.rank::self.dist.world_size]
        pre = self.card.preprocessing
        vmap = None if all(a == b for a, b in self.value_map.items()) else self.value_map
        self.sampler = CropSampler(load_cases(self.dataset, mine, pre, vmap), self.roi, augment=cfg.augment,
                                   profile=cfg.augment_profile)
        self.val_cases = load_cases(self.dataset, self.val_ids, pre, vmap) if self.dist.is_main else []

    # ------------------------------------------------------------------ resume
    def _config_key(self) -> str:
        return json.dumps({"architecture": self.card.architecture, "out_channels": self.card.out_channels,
                           "hyperparameters": self.card.hyperparameters}, sort_keys=True, default=str)

    def _resume(self) -> bool:
        """Load ``resume.pt`` if there is one; True when the run had already finished."""
        state, error = None, None
        if self.dist.is_main:
            try:
                state = load_resume(self.resume_path)
            except LkSegError as exc:  # every rank must hear of it, or the others would wait forever
                error = str(exc)
        state, error = broadcast_object((state, error), self.dist)
        if error:
            raise LkSegError(error)
        if state is None:
            self.log.restore(0)
            return False
        if state.get("config_key") != self._config_key():
            raise LkSegError(f"{self.out} holds a run of another model ({state.get('config_key')}); "
                             "use a new --out folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.best_dice = float(state["best_dice"])
        self.best_step = state.get("best_step")
        self.elapsed = float(state.get("elapsed_s", 0.0))
        if self.cfg.steps is None and self.cfg.minutes is not None and state.get("total_steps"):
            self.total_steps = int(state["total_steps"])
        set_rng_state(state.get("rng", {}))
        log.info("resuming %s from step %d", self.out, self.step)
        if state.get("finished") and self.step >= self.total_steps and self.best_path.is_file():
            log.info("%s already finished (%d steps); nothing to do", self.out, self.step)
            return True
        self.log.restore(self.step)
        return False

    def _save_resume(self, finished: bool = False) -> None:
        if not self.dist.is_main:
            return
        atomic_torch_save({
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "total_steps": self.total_steps, "best_dice": self.best_dice,
            "best_step": self.best_step, "elapsed_s": self.elapsed, "rng": rng_state(),
            "config_key": self._config_key(), "finished": finished,
        }, self.resume_path)

    # ------------------------------------------------------------------ loop
    def _loop(self) -> Path:
        cfg, dist = self.cfg, self.dist
        if dist.initialized:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids)
        self._dump_weights("initial")
        amp_dtype = training_autocast_dtype(self.device, cfg.amp)
        use_amp = amp_dtype is not None
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and amp_dtype == torch.float16)
        timer, start_step, t0 = Timer(), self.step, time.monotonic() - self.elapsed
        budget = TimeBudget(cfg.minutes) if self.time_limited and self.total_steps >= 10**9 else None
        loss_value = float("nan")
        while self.step < self.total_steps:
            if self.cancel is not None and self.cancel.is_set():
                self._save_resume()
                raise Cancelled("training cancelled; rerun with the same --out to continue")
            x, y = self.sampler.batch(cfg.batch_size, cfg.seed, dist.rank, self.step)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                outputs = self.net(x)
            loss = deep_supervision_loss(self.loss_fn, float_outputs(outputs), y)
            self.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(self.optimizer)
            scaler.update()
            self.scheduler.step()
            self.step += 1
            loss_value = mean_over_ranks(float(loss.detach()), self.dist, self.device)
            timer.tick()
            self.elapsed = time.monotonic() - t0
            if budget is not None and (total := budget.length(self.step - start_step, self.step, self.elapsed,
                                                               timer.avg)) is not None:
                self.total_steps = broadcast_object(total, self.dist)
            val = None
            if self.step % max(1, cfg.val_every) == 0 or self.step >= self.total_steps:
                val = self._validate()
                timer.reset()
                if self._no_longer_improving():
                    self.total_steps = self.stopped_early = self.step
            self._record(loss_value, val, timer)
            if self.step % max(1, cfg.checkpoint_every) == 0 or self.step >= self.total_steps:
                self._write_checkpoint(self.last_path)
                self._save_resume(finished=self.step >= self.total_steps)
            barrier(dist)
        self._dump_weights("final")
        if dist.is_main:
            plot_curves(self.log.history, self.out / "curves.png")
            done = {"event": "done", "best": str(self.best_path), "last": str(self.last_path),
                    "best_step": self.best_step, "stopped_early": self.stopped_early,
                    **self._base_record(loss_value, self.last_val, 0.0)}
            self.log.write(done)
            if self.progress_fn:
                self.progress_fn({**done, "total_steps": self.total_steps})
        return self.best_path

    def _no_longer_improving(self) -> bool:
        """--patience: no better validation Dice for that many validations (the main process decides)."""
        p, best = self.cfg.patience, self.best_step
        stop = bool(p) and best is not None and self.step - best >= p * self.cfg.val_every
        if broadcast_object(stop, self.dist):
            log.info("step %d: no better validation Dice since step %s; stopping early", self.step, best)
            return True
        return False

    def _base_record(self, loss: float, val: dict | None, eta: float) -> dict:
        seen = self.step * self.cfg.batch_size * self.dist.world_size
        return {"step": self.step, "epoch": seen // max(1, len(self.train_ids)),
                "loss": None if math.isnan(loss) else round(loss, 6),
                "lr": self.optimizer.param_groups[0]["lr"],
                "val_dice": None if val is None else val["mean"], "eta_s": round(eta, 1), "time": time.time()}

    def _record(self, loss: float, val: dict | None, timer: Timer) -> None:
        if not self.dist.is_main:
            return
        eta = (self.total_steps - self.step) * (timer.avg or 0.0) if self.total_steps < 10**9 else None
        rec = self._base_record(loss, val, eta or 0.0)
        if eta is None:
            rec["eta_s"] = None
        if val is not None:
            rec["val_dice_per_label"] = val["per_label"]
        self.log.write(rec)
        if val is not None:
            plot_curves(self.log.history, self.out / "curves.png")
        if self.progress_fn:
            self.progress_fn({**rec, "total_steps": self.total_steps})

    # ------------------------------------------------------------------ validation and checkpoints
    def _validate(self) -> dict | None:
        result = None
        if self.dist.is_main:
            result = self._validate_main()
            self.last_val = result
            score = result["mean"] if result["mean"] is not None else 0.0
            if score > self.best_dice or not self.best_path.is_file():
                self.best_dice, self.best_step = score, self.step
                self._write_checkpoint(self.best_path)
            log.info("step %d: validation mean Dice %s", self.step, result["mean"])
        barrier(self.dist)
        return result

    def _validate_main(self) -> dict:
        from monai.inferers import sliding_window_inference

        inf = self.card.inference
        self.model.eval()
        sums: dict[int, list[float]] = {v: [] for v in self.label_values}
        amp_dtype = training_autocast_dtype(self.device, self.cfg.amp)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=amp_dtype or torch.float32,
                                             enabled=amp_dtype is not None):
            for case in self.val_cases:
                logits = sliding_window_inference(
                    case.image[None].to(self.device), self.roi, int(getattr(inf, "sw_batch_size", 4)),
                    lambda t: main_output(self.model(t)), overlap=float(getattr(inf, "overlap", 0.5)),
                    mode="gaussian" if getattr(inf, "blend", "gaussian") == "gaussian" else "constant")
                pred = logits.argmax(1)[0].cpu().numpy()
                for v, d in dice_per_label(pred, case.label[0].numpy(), self.label_values).items():
                    if d is not None:
                        sums[v].append(d)
        self.model.train()
        per_label = {self.label_names[v]: (round(sum(d) / len(d), 4) if d else None) for v, d in sums.items()}
        scored = [d for d in per_label.values() if d is not None]
        return {"mean": round(sum(scored) / len(scored), 4) if scored else None, "per_label": per_label}

    def _write_checkpoint(self, path: Path) -> None:
        if not self.dist.is_main:
            return
        from lkseg import __version__
        from lkseg import checkpoint as ck
        from lkseg.utils.timestamps import now_iso

        val = self.last_val or {}
        notes = [n for n in (self.cfg.notes, self.split_note) if n]
        prov = dataclasses.replace(
            self.card.provenance, parent_sha256=self.parent_sha, created=now_iso(), lkseg_version=__version__,
            notes=" ".join(notes),
            training_data={"dataset": self.dataset.name, "dataset_path": str(self.cfg.dataset),
                           "cases": list(self.train_ids), "val_cases": list(self.val_ids),
                           "num_cases": len(self.train_ids), "steps": self.step, "batch_size": self.cfg.batch_size,
                           "world_size": self.dist.world_size, "roi_size": list(self.roi), "lr": self.lr,
                           "precision": str(training_autocast_dtype(self.device, self.cfg.amp) or torch.float32)
                           .removeprefix("torch.")},
            metrics={"val_dice": val.get("per_label"), "val_dice_mean": val.get("mean"), "step": self.step,
                     "val_cases": list(self.val_ids), "notes": self.split_note})
        card = dataclasses.replace(self.card, provenance=prov)
        state = {k: v.detach().cpu().clone().contiguous() for k, v in self.model.state_dict().items()}
        ck.save_checkpoint(path, state, card)

    def _dump_weights(self, when: str) -> None:
        if not self.cfg.debug_dump_weights:
            return
        folder = self.out / "debug"
        folder.mkdir(parents=True, exist_ok=True)
        f = folder / f"weights_rank{self.dist.rank}.json"
        data = json.loads(f.read_text()) if f.is_file() else {}
        data[when] = state_dict_sha256(self.model.state_dict())
        data["step"] = self.step
        f.write_text(json.dumps(data))
