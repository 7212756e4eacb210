"""The training loop: data-parallel steps, mixed precision, EMA, logging, checkpoints and resuming.

One process per rank (``mpiexec -n N``), one device per rank; with more than
one rank the network is wrapped in ``DistributedDataParallel``, so every rank
keeps identical parameters. Each step draws ``batch_size`` crops per rank (the
global batch is ``batch_size x world_size``), optionally in microbatches whose
gradients are accumulated.

A checkpoint ``checkpoint_{step:07d}.pt`` (see :mod:`guided_diffusion.train_state`)
holds ``{"format", "step", "model", "ema": {rate: state_dict}, "optimizer",
"scaler", "sampler", "rng", "rank_checksums", "flags", "options"}`` (and, for the
GAN baseline, ``"discriminator"``: its weights, optimiser and scaler): ``rng`` has every rank's
torch / numpy / noise generator states and the data stream position, ``flags``
every model and diffusion flag (``sr_create_model_and_diffusion(**flags)``
rebuilds the network), ``options`` the :class:`TrainOptions`. Only tensors,
numbers, strings and plain containers, so ``torch.load(weights_only=True)``
reads it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import dist_util, storage
from .checkpoint import CHECKPOINT_FORMAT, load_model_weights, read_checkpoint
from .ema import EMA, parse_ema_rates
from .errors import UserError
from .gaussian_diffusion import GaussianDiffusion
from .model_card import CARD_SUFFIX, latest_validation, make_card, write_card
from .precision import autocast, check_precision, choose_precision
from .regression import RegressionProcess
from .resample import LossAwareSampler, ScheduleSampler, create_named_schedule_sampler
from .train_adversary import LOG_COLUMNS, DiscriminatorTrainer
from .train_log import ProgressLog
from .train_state import (
    ema_path,
    latest_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    write_checkpoint,
)

# Separate the loop's random streams from each other and from the data stream.
TIMESTEP_STREAM, NOISE_STREAM, TORCH_STREAM = 0x7157, 0x4015E, 0x70C4
# Differences in these flags do not change the network's layout (training_data: the data's description, which a
# resumed run may change), so a run may resume with other values.
RESUMABLE_FLAG_CHANGES = ("use_fp16", "timestep_respacing", "regression_loss", "training_data")


@dataclass
class TrainOptions:
    """Training flags (the paper's names where it had them) and their defaults.

    ``precision`` "": from the model flag ``--use_fp16`` (see :mod:`~guided_diffusion.precision`).
    ``max_steps`` / ``lr_anneal_steps``: training stops at the smaller of the two
    that are set (> 0); with ``lr_anneal_steps`` the learning rate falls
    linearly to 0 at that step. ``keep_last`` 0 keeps every checkpoint.
    ``max_train_timestep`` T > 0 trains on diffusion steps ``t <= T`` only (a model always run from a warm start
    at or below T; see :mod:`~guided_diffusion.resample`); ``snr_gamma`` G > 0 weights the diffusion loss by
    Min-SNR-gamma (see :meth:`~guided_diffusion.gaussian_diffusion.GaussianDiffusion.training_losses`).
    """

    result_folder: str = "results"
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 1
    microbatch: int = -1
    ema_rate: str = "0.9999"
    grad_clip: float = 0.0
    precision: str = ""
    max_steps: int = 0
    lr_anneal_steps: int = 0
    schedule_sampler: str = "uniform"
    max_train_timestep: int = 0
    snr_gamma: float = 0.0
    log_interval: int = 10
    save_interval: int = 10000
    keep_last: int = 3
    resume_checkpoint: str = ""
    init_weights: str = ""
    val_interval: int = 1000
    seed: int = 0

    def check(self) -> None:
        """Raise UserError naming the first bad flag."""
        positive = {"--batch_size": self.batch_size, "--log_interval": self.log_interval,
                    "--save_interval": self.save_interval, "--val_interval": self.val_interval}
        for flag, value in positive.items():
            if value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}")
        if self.microbatch == 0 or self.microbatch < -1:
            raise UserError(f"--microbatch must be -1 (off) or a positive number of crops, got {self.microbatch}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be positive and finite, got {self.lr}")
        for flag, value in {"--weight_decay": self.weight_decay, "--grad_clip": self.grad_clip,
                            "--snr_gamma": self.snr_gamma}.items():
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"{flag} must be 0 or a positive finite number, got {value}")
        if self.max_steps <= 0 and self.lr_anneal_steps <= 0:
            raise UserError("set --max_steps and/or --lr_anneal_steps: training would otherwise never stop")
        if self.keep_last < 0:
            raise UserError(f"--keep_last must be 0 (keep all) or more, got {self.keep_last}")
        check_precision(self.precision)
        if self.schedule_sampler not in ("uniform", "loss-second-moment"):
            raise UserError(f"--schedule_sampler {self.schedule_sampler!r}: use uniform or loss-second-moment")
        parse_ema_rates(self.ema_rate)

    @property
    def stop_step(self) -> int:
        return min(s for s in (self.max_steps, self.lr_anneal_steps) if s > 0)


def train_defaults() -> dict:
    """Defaults of every training flag (see :class:`TrainOptions`)."""
    return asdict(TrainOptions())


class Evaluator(Protocol):
    """Scores the network on fixed validation data (e.g. :class:`~guided_diffusion.pet.training.validation.CropEvaluator`)."""

    metric_names: tuple[str, ...]

    def __len__(self) -> int: ...

    def evaluate(self, model: Callable, indices: Iterable[int]) -> list[dict[str, float]]: ...


def resume_path(options: TrainOptions) -> str | Path | None:
    """The checkpoint a run resumes from: ``--resume_checkpoint``, else the newest in ``--result_folder``, else None."""
    return options.resume_checkpoint or latest_checkpoint(options.result_folder)


def read_training_checkpoint(path: str | Path) -> dict:
    """Read the training checkpoint ``path`` (see :func:`~guided_diffusion.checkpoint.read_checkpoint`).

    Raises:
        UserError: the file is missing, unreadable or unsafe, or holds a plain ``state_dict``.
    """
    ckpt = read_checkpoint(path, flag="--resume_checkpoint")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"--resume_checkpoint {path} is a plain state_dict, not a training checkpoint; "
                        "start from its weights with --init_weights instead")
    return ckpt


def check_start_files(options: TrainOptions) -> None:
    """Read the file a run starts from (:func:`resume_path`, else ``--init_weights``), before any data is prepared.

    Raises:
        UserError: naming the file and its flag, as :func:`read_training_checkpoint` or
            :func:`~guided_diffusion.checkpoint.read_checkpoint` would later.
    """
    resume = resume_path(options)
    if resume is not None:
        read_training_checkpoint(resume)
    elif options.init_weights:
        read_checkpoint(options.init_weights, flag="--init_weights")


def non_finite_part(loss: torch.Tensor, modules: Iterable[torch.nn.Module]) -> str | None:
    """What a training step left NaN or infinite: ``"the loss"`` (any element of ``loss``, shape (B,)), ``"the
    parameters"`` (of any of ``modules``), or None when everything is finite."""
    if not bool(torch.isfinite(loss).all()):
        return "the loss"
    return None if finite_parameters(modules) else "the parameters"


def finite_parameters(modules: Iterable[torch.nn.Module]) -> bool:
    """Whether every parameter of ``modules`` is finite (no NaN, no infinity)."""
    return bool(torch.stack([torch.isfinite(p).all() for module in modules for p in module.parameters()]).all())


def refuse_non_finite_weights(model: torch.nn.Module, path: str | Path, flag: str) -> None:
    """UserError naming ``flag`` and ``path`` when the weights just loaded into ``model`` hold NaN or infinity
    (a run saved after it diverged): training from them would only repeat the divergence."""
    if not finite_parameters([model]):
        raise UserError(f"{flag} {path}: its weights hold NaN or infinite values (saved after the run diverged); "
                        "start from an earlier checkpoint (--resume_checkpoint) or from other weights")


def parameter_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in order: equal exactly when the parameters are."""
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TrainLoop:
    """Train ``model`` on batches from ``data`` until the stop step, then return.

    Args:
        model: the conditional UNet, called as ``model(x_t, t, low_res=low)`` (or, for the
            regression baseline, the UNet called as ``model(low, t)``).
        diffusion: the training process (``training_losses``): a diffusion process, a
            :class:`~guided_diffusion.regression.RegressionProcess`, or an
            :class:`~guided_diffusion.adversarial.AdversarialProcess` (the GAN baseline): a process
            holding a ``discriminator`` has it trained after every generator step.
        data: ``data(start_batch)`` -> iterable of (full, low) batches, each (B, 1, Z, X, Y)
            (3D network) or (B, 1, X, Y) (2D network, axial slices) in the model range,
            starting at this rank's batch ``start_batch``.
        options: training flags.
        flags: every model and diffusion flag, stored in checkpoints.
        evaluator: validation run every ``options.val_interval`` steps with the first EMA weights.

    During training the loop's precision (``torch.amp``) is in charge: the
    network's own inference autocast (``use_fp16``) is switched off.

    After every step the ranks agree that the loss and the parameters are finite;
    if not, every rank raises :class:`UserError` naming the step and the last good
    checkpoint, before the EMA or a checkpoint takes the diverged step in.
    """

    def __init__(
        self, *, model: torch.nn.Module, diffusion: GaussianDiffusion | RegressionProcess,
        data: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
        options: TrainOptions, flags: dict, evaluator: Evaluator | None = None, predating_flags: dict | None = None,
    ):
        dist_util.agree(options.check)
        self.options, self.flags = options, dict(flags)
        self.predating_flags = dict(predating_flags or {})
        self.diffusion, self.data, self.evaluator = diffusion, data, evaluator
        self.device = dist_util.dev()
        self.rank, self.world_size = dist_util.rank(), dist_util.world_size()
        # A local folder or a cloud URL (see guided_diffusion.storage).
        self.folder = options.result_folder
        storage.makedirs(self.folder)
        self.precision = choose_precision(options.precision, bool(flags.get("use_fp16")), self.device)
        self.model = model.to(self.device)
        if hasattr(self.model, "use_fp16"):
            self.model.use_fp16 = False
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.sampler: ScheduleSampler = create_named_schedule_sampler(options.schedule_sampler, diffusion,
                                                                      options.max_train_timestep)
        # Only a diffusion process weights its loss by SNR (the one-pass kinds refuse --snr_gamma).
        self.loss_options = {"snr_gamma": options.snr_gamma} if options.snr_gamma else {}
        self.rates = parse_ema_rates(options.ema_rate)
        self.adversary = DiscriminatorTrainer(
            diffusion, self.device, options.lr, options.weight_decay, self._autocast, self.precision == "fp16",
        ) if getattr(diffusion, "discriminator", None) is not None else None

        resume = dist_util.from_root(lambda: resume_path(options))
        self.step = dist_util.agree(lambda: self._start(resume))
        if self.rank == 0:
            remove_stale_temporaries(self.folder)
        self.ddp_model = self.model
        if self.world_size > 1:
            dist_util.init_process_group()
            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
            )
            if self.adversary is not None:
                self.adversary.distribute()
        self.eval_model = copy.deepcopy(self.model).eval() if evaluator is not None else None
        columns = (*(LOG_COLUMNS if self.adversary else ()),
                   *(evaluator.metric_names if evaluator is not None else ()))
        self.log = ProgressLog(storage.join(self.folder, "progress.csv"), columns, start_step=self.step)

    # -- start: fresh, fine-tuned or resumed ---------------------------------

    def _start(self, resume: str | Path | None) -> int:
        """Restore ``resume`` or initialise (``--init_weights``); return the step to continue from."""
        if resume is None:
            if self.options.init_weights:
                load_model_weights(self.model, self.options.init_weights, flag="--init_weights")
                refuse_non_finite_weights(self.model, self.options.init_weights, "--init_weights")
            self.ema = EMA(self.model, self.rates)
            self._seed_generators(step=0)
            return 0
        if self.options.init_weights and self.rank == 0:
            tqdm.write(f"--init_weights is ignored: resuming the run in {resume}")
        ckpt = read_training_checkpoint(resume)
        self._check_flags(ckpt["flags"], resume)
        self.model.load_state_dict(ckpt["model"])
        refuse_non_finite_weights(self.model, resume, "--resume_checkpoint")
        self.ema = EMA(self.model, self.rates)
        for rate in self.rates:
            if rate in ckpt["ema"]:
                self.ema.load(rate, ckpt["ema"][rate])
            elif self.rank == 0:
                tqdm.write(f"EMA rate {rate} is not in {resume}; its average starts from the current weights")
        self.opt.load_state_dict(ckpt["optimizer"])
        for group in self.opt.param_groups:
            group["weight_decay"] = self.options.weight_decay
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.adversary is not None:
            if "discriminator" not in ckpt:
                raise UserError(f"--resume_checkpoint {resume} holds no discriminator; start a GAN from its "
                                "weights with --init_weights instead")
            self.adversary.load_state_dict(ckpt["discriminator"])
        if ckpt["options"]["schedule_sampler"] == self.options.schedule_sampler:
            self.sampler.load_state_dict(ckpt["sampler"])
        step = int(ckpt["step"])
        ranks = ckpt["rng"]["ranks"]
        if len(ranks) == self.world_size:
            self._restore_generators(ranks[self.rank])
        else:
            self._seed_generators(step)
        if self.rank == 0:
            tqdm.write(f"resuming from {resume} at step {step}")
        return step

    def _check_flags(self, stored: dict, path: str | Path) -> None:
        """Refuse to resume with other model/diffusion flags. A flag the checkpoint predates is not compared,
        unless ``predating_flags`` (the model kind's) says which value it was trained with."""
        stored = {**self.predating_flags, **stored}
        differ = [f"--{k} {stored.get(k)!r} (now {v!r})" for k, v in self.flags.items()
                  if k not in RESUMABLE_FLAG_CHANGES and k in stored and stored[k] != v]
        if differ:
            raise UserError(f"{path} was trained with {', '.join(differ)}; pass the same model/diffusion flags "
                            "to resume, or choose a new --result_folder")

    # -- random streams ----------------------------------------------------------

    def _seed_generators(self, step: int) -> None:
        """Per-rank streams from (seed, rank, step); step > 0 only when resuming with another number of ranks."""
        def entropy(stream: int) -> list[int]:
            return [stream, self.options.seed, self.rank, step]

        self.timestep_rng = np.random.default_rng(entropy(TIMESTEP_STREAM))
        self.noise_gen = torch.Generator(self.device)
        self.noise_gen.manual_seed(int(np.random.SeedSequence(entropy(NOISE_STREAM)).generate_state(1)[0]))
        # Dropout draws from torch's global generator.
        torch.manual_seed(int(np.random.SeedSequence(entropy(TORCH_STREAM)).generate_state(1)[0]))

    def _capture_generators(self) -> dict:
        state = {"torch": torch.get_rng_state(), "timesteps": self.timestep_rng.bit_generator.state,
                 "noise": self.noise_gen.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore_generators(self, state: dict) -> None:
        self.timestep_rng = np.random.default_rng()
        self.timestep_rng.bit_generator.state = state["timesteps"]
        self.noise_gen = torch.Generator(self.device)
        self.noise_gen.set_state(state["noise"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    # -- the loop ------------------------------------------------------------

    def run_loop(self) -> None:
        """Train from the current step to the stop step, logging, validating and saving on the way."""
        options, stop = self.options, self.options.stop_step
        if self.rank == 0:
            params = sum(p.numel() for p in self.model.parameters())
            tqdm.write(
                f"training {params:,} parameters on {self.world_size} rank(s) ({self.device}, {self.precision}); "
                f"global batch {options.batch_size} x {self.world_size} = {options.batch_size * self.world_size}; "
                f"steps {self.step} -> {stop}"
            )
        if self.step >= stop:
            return
        bar = tqdm(total=stop, initial=self.step, disable=self.rank != 0, desc="training", dynamic_ncols=True)
        try:
            self._train_until(stop, bar)
        except UserError:
            bar.leave = False  # the error's one line takes the bar's place
            raise
        finally:
            bar.close()

    def _train_until(self, stop: int, bar: tqdm) -> None:
        """Steps from the current one to ``stop``, logging, validating and saving on the way."""
        options = self.options
        batches = iter(self.data(self.step))
        since, steps_since = time.perf_counter(), 0
        while self.step < stop:
            full, low = next(batches)
            self.run_step(full.to(self.device), low.to(self.device))
            self.step += 1
            steps_since += 1
            bar.update(1)
            validate = self.evaluator is not None and (self.step % options.val_interval == 0 or self.step == stop)
            if validate or self.step % options.log_interval == 0 or self.step == stop:
                elapsed = time.perf_counter() - since
                samples = options.batch_size * self.world_size
                values = {"samples": self.step * samples, "samples_per_s": steps_since * samples / elapsed}
                if validate:
                    values.update(self.validate())
                self.log.write(self.step, values)
                since, steps_since = time.perf_counter(), 0
            if self.step % options.save_interval == 0 or self.step == stop:
                self.save()

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): constant, or falling linearly to 0 at ``lr_anneal_steps``."""
        if self.options.lr_anneal_steps <= 0:
            return self.options.lr
        return self.options.lr * (1.0 - step / self.options.lr_anneal_steps)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.precision, self.device)

    def _forward(self, x_t: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        with self._autocast():
            return self.ddp_model(x_t, t, **kwargs).float()

    def run_step(self, full: torch.Tensor, low: torch.Tensor) -> None:
        """One optimiser step on a batch (B, 1, Z, X, Y) or (B, 1, X, Y), in microbatches if asked."""
        batch = full.shape[0]
        size = self.options.microbatch if self.options.microbatch > 0 else batch
        # Drawn for the whole batch, so --microbatch changes memory use, not the run.
        t, weights = self.sampler.sample(batch, self.device, self.timestep_rng)
        noise = torch.randn(full.shape, generator=self.noise_gen, device=self.device)
        self.opt.zero_grad(set_to_none=True)
        parts = []
        for start in range(0, batch, size):
            part = slice(start, start + size)
            # Gradients are averaged across ranks once, after the last microbatch.
            last = start + size >= batch
            sync = contextlib.nullcontext() if last or self.ddp_model is self.model else self.ddp_model.no_sync()
            with sync:
                losses = self.diffusion.training_losses(self._forward, full[part], t[part], noise=noise[part],
                                                        model_kwargs={"low_res": low[part]}, **self.loss_options)
                # Each microbatch's share of the batch mean, so the summed gradient equals the full batch's.
                loss = (losses["loss"] * weights[part]).sum() / batch
                self.scaler.scale(loss).backward()
            parts.append({k: v.detach() for k, v in losses.items()})
        losses = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if isinstance(self.sampler, LossAwareSampler):
            self.sampler.update_with_local_losses(t, losses["loss"])
        self.log.add_losses(losses, t, self.diffusion.num_timesteps)
        self.scaler.unscale_(self.opt)
        # max_norm inf measures without clipping.
        max_norm = self.options.grad_clip if self.options.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        lr = self.lr_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.adversary is not None:
            self.adversary.train_step(self.log, losses, low, full, lr)
        # Every rank stops together, before the EMA or a checkpoint can take in the diverged step.
        dist_util.agree(lambda: self._stop_if_diverged(losses["loss"]))
        self.ema.update(self.model, self.step + 1)
        self.log.add("grad_norm", grad_norm.item())
        self.log.add("lr", lr)

    def _trained_modules(self) -> list[torch.nn.Module]:
        """The network, and the GAN's discriminator when there is one."""
        return [self.model] + ([self.adversary.module] if self.adversary is not None else [])

    def _stop_if_diverged(self, loss: torch.Tensor) -> None:
        """Raise UserError if the step just taken (``self.step + 1``) made ``loss`` (B,) or a parameter non-finite."""
        part = non_finite_part(loss, self._trained_modules())
        if part is None:
            return
        last = latest_checkpoint(self.folder)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint of this run was saved yet"
        raise UserError(f"training diverged at step {self.step + 1}: {part} became NaN or infinite; {kept}; "
                        f"lower --lr (now {self.options.lr:g}) or set --grad_clip, and run again")

    # -- validation and checkpoints ------------------------------------------

    def validate(self) -> dict[str, float]:
        """Mean validation scores of the first EMA weights over every crop (crops shared among ranks)."""
        self.eval_model.load_state_dict(self.ema.state_dict(self.model, self.rates[0]))

        def forward(x_t: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
            with self._autocast():
                return self.eval_model(x_t, t, **kwargs).float()

        with torch.no_grad():
            mine = self.evaluator.evaluate(forward, range(self.rank, len(self.evaluator), self.world_size))
        scores = [s for part in dist_util.COMM.allgather(mine) for s in part]
        return {name: float(np.mean([s[name] for s in scores])) for name in self.evaluator.metric_names}

    def save(self) -> None:
        """Write the checkpoint and EMA files of this step (rank 0), then prune old ones. A collective."""
        generators = dist_util.COMM.gather(self._capture_generators(), root=0)
        # Every rank's parameters (and discriminator's) must be identical (DDP); a record of it, checked here
        # and by tests.
        checksums = dist_util.COMM.gather(":".join(parameter_checksum(m) for m in self._trained_modules()), root=0)
        if self.rank != 0:
            return
        if len(set(checksums)) > 1:
            tqdm.write(f"warning: step {self.step}: parameters differ between ranks ({checksums})")
        emas = {rate: self.ema.state_dict(self.model, rate) for rate in self.rates}
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": emas,
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": {"ranks": generators, "data": {"seed": self.options.seed, "next_batch": self.step}},
            "rank_checksums": checksums,
            "flags": self.flags,
            "options": asdict(self.options),
        }
        if self.adversary is not None:
            state["discriminator"] = self.adversary.state_dict()
        checkpoint = write_checkpoint(self.folder, self.step, state, emas)
        for rate in self.rates:
            self._write_card(ema_path(self.folder, rate, self.step), "ema", rate)
        self._write_card(checkpoint, "checkpoint", self.rates[0])
        prune_checkpoints(self.folder, self.options.keep_last, sidecars=(CARD_SUFFIX,))

    def _write_card(self, weights: str | Path, kind: str, rate: str) -> None:
        """Write the model card of the weights file ``weights`` just saved (see :mod:`~guided_diffusion.model_card`).

        ``rate``: the EMA rate of its weights (a checkpoint's default weights are the first rate's); the
        validation scores, of the first rate, go on those cards only.
        """
        flags = {k: v for k, v in self.flags.items() if k != "training_data"}
        training = {"step": self.step, "precision": self.precision, "lr": self.options.lr,
                    "batch_size": self.options.batch_size, "num_ranks": self.world_size, "ema_rate": rate}
        validation = latest_validation(self.log.path) if rate == self.rates[0] else None
        card = make_card(weights, kind=kind, configuration=flags, model_voxel_size_mm=flags.get("model_voxel_size"),
                         suv_max=flags.get("suv_max"), training_data=self.flags.get("training_data"),
                         training=training, validation=validation)
        write_card(weights, card)
