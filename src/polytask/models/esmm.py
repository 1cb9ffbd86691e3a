"""Entire Space Multi-task Model (ESMM) and its ablation ESMM-NS.

X. Ma, Zhao, Huang, Wang, Hu, Zhu, Gai. "Entire Space Multi-Task Model: An Effective Approach for
Estimating Post-Click Conversion Rate", SIGIR 2018. Impression -> click -> conversion:

* ``pCTCVR = pCTR x pCVR`` (Eq. 1): a CTR tower and a CVR tower (the BASE Embedding&MLP structure)
  over an embedding table both share;
* loss over **all** impressions (Eq. 3): ``CE(y, pCTR) + CE(y & z, pCTR x pCVR)``. There is no
  direct CVR loss: pCVR is an intermediate variable, learned on the entire impression space
  through pCTCVR, which removes the sample-selection bias of training CVR on clicked rows only.

The roles are named tasks: ``ctr_task`` (label: click, all impressions) and ``ctcvr_task`` (label:
click and conversion, all impressions) are trained with the standard binary loss. The model's raw
``ctcvr`` output is the *logit of the product* ``pCTR x pCVR``, computed from the two tower logits
``a``, ``b`` without forming probabilities::

    log p     = logsigmoid(a) + logsigmoid(b)
    log (1-p) = log(sigma(-a) + sigma(a) sigma(-b)) = logaddexp(logsigmoid(-a), logsigmoid(a) + logsigmoid(-b))
    logit p   = log p - log(1 - p)

(``1 - sigma(a) sigma(b) = sigma(-a) + sigma(a) sigma(-b)``; this is ``log1mexp(log p)`` written
so it needs no branch and stays finite for every finite ``a``, ``b``). BCE-with-logits on this
output is therefore exactly the paper's ``CE(y & z, pCTR x pCVR)``, and the task's ``predict``
(sigmoid) returns ``pCTR x pCVR``.

``cvr_task``, when configured (e.g. label purchase with ``where: click == 1``), receives the CVR
tower's logit for every impression; it is evaluated and predicted, never in the loss
(:meth:`ESMM.loss_task_names`). Any other configured task gets its own tower over the same
embedding and is trained normally. ``shared_embeddings=False`` is ESMM-NS (the paper's ablation):
every tower has its own embedding table and nothing is shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.registry import MODELS
from polytask.tasks import Task


def product_logit(a: Tensor, b: Tensor) -> Tensor:
    """``logit(sigmoid(a) * sigmoid(b))``, computed stably from the logits ``a`` and ``b``.

    Finite for all finite inputs (``a = b = 200`` gives about 199.3, ``a = b = -200`` about -400)
    and differentiable everywhere; ``sigmoid`` of the result equals ``sigmoid(a) * sigmoid(b)``
    up to rounding, including products far below float precision near 0 or 1."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)  # half precision -> float32
    a, b = a.to(dtype), b.to(dtype)
    log_pa, log_pb = F.logsigmoid(a), F.logsigmoid(b)
    log_p = log_pa + log_pb
    log_1mp = torch.logaddexp(F.logsigmoid(-a), log_pa + F.logsigmoid(-b))
    return log_p - log_1mp


@MODELS.register("esmm")
class ESMM(MultiTaskModel):
    """ESMM: CTR and CVR towers over a shared embedding; ``ctcvr`` = logit(pCTR x pCVR) (Ma et al., SIGIR 2018).

    Args:
        ctr_task, cvr_task, ctcvr_task: the configured tasks playing the three roles. The ctr and
            ctcvr tasks must be configured and binary; the cvr task is optional (if configured it
            must be binary, and it is predicted and evaluated but not trained: no direct CVR loss).
        tower_hidden: hidden sizes of every tower (paper: 360-200-80, then the output layer;
            the default is that divided by 4).
        embedding_dim: width of every categorical embedding (paper: 18).
        shared_embeddings: True is ESMM (one embedding table for all towers); False is the
            paper's ESMM-NS ablation (one table per tower).
        encoder, encoder_params: the input encoder (see :mod:`polytask.encoders`).
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        ctr_task: str = "ctr",
        cvr_task: str = "cvr",
        ctcvr_task: str = "ctcvr",
        tower_hidden: list[int] = [90, 50, 20],  # noqa: B006 - the paper's 360-200-80 / 4
        embedding_dim: int = 8,
        shared_embeddings: bool = True,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        by_name = {t.name: t for t in tasks}
        configured = ", ".join(self.task_names)
        roles = {"ctr_task": ctr_task, "cvr_task": cvr_task, "ctcvr_task": ctcvr_task}
        if len(set(roles.values())) < 3:
            raise ValueError(f"esmm: ctr_task, cvr_task and ctcvr_task must name different tasks (got {roles})")
        for key in ("ctr_task", "ctcvr_task"):
            if roles[key] not in by_name:
                raise ValueError(
                    f"esmm: {key}={roles[key]!r} is not a configured task (tasks: {configured}); "
                    f"set model.{key} to the name of the task playing that role"
                )
        for key, name in roles.items():
            if name in by_name and by_name[name].kind != "binary":
                raise ValueError(f"esmm: {key}={name!r} must be a binary task, not {by_name[name].kind}")
        self.ctr_task, self.cvr_task, self.ctcvr_task = ctr_task, cvr_task, ctcvr_task
        self.shared_embeddings = shared_embeddings
        #: tasks with a tower of their own besides the CTR and CVR towers
        self.other_tasks = [t for t in tasks if t.name not in roles.values()]
        # towers: 0 = CTR, 1 = CVR, then one per other task; one batched op for all of them
        tower_tasks = [by_name[ctr_task], by_name.get(cvr_task) or Task(cvr_task), *self.other_tasks]
        if shared_embeddings:
            self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        else:
            self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim, copies=len(tower_tasks))
        self.towers = TaskHeads(tower_tasks, self.input.out_dim, tower_hidden, act=activation, dropout=dropout)

    def loss_task_names(self) -> list[str]:
        """Every configured task except the cvr role: pCVR is learned only through pCTCVR."""
        return [n for n in self.task_names if n != self.cvr_task]

    def shared_modules(self) -> list[nn.Module]:
        return [self.input] if self.shared_embeddings else []

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.input(features)
        if self.shared_embeddings:
            x = self.share(x)
        out = self.towers(x)  # ctr, cvr and the other tasks' raw outputs
        out[self.ctcvr_task] = product_logit(out[self.ctr_task], out[self.cvr_task])
        return self.read_out({name: out[name] for name in self.task_names}, features)
