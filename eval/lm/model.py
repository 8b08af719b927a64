"""AiraLM: an aira CausalLM as an lm-eval model (`@register_model("aira")`).

Scoring rules (the same as lm-eval's HFLM for a causal model, so numbers are comparable):
- loglikelihood(context, continuation): [prefix] + context + continuation, truncated from the left to
  max_length + 1 tokens; the sum of the continuation tokens' log-probabilities, and whether greedy
  decoding would have produced exactly the continuation.
- loglikelihood_rolling(text): the text cut into disjoint windows of max_length predicted tokens
  (lm_eval.utils.get_rolling_token_windows with context_len 1), every token scored exactly once.
- generate_until(context, until, max_gen_toks): greedy decoding with the per-layer KV / recurrent state
  cache of models.generate, cut at the first stop string.

Batches are sorted longest first (lm-eval's Collator) and right-padded: every mixer is causal, so a
real position never sees the padding after it and no attention mask is needed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import Collator
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from eval.lm.errors import LMEvalError
from eval.lm.loading import Loaded, decode, load
from models.generate import new_states

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
DEFAULT_MAX_GEN_TOKS = 256


@register_model("aira")
class AiraLM(TemplateLM):
    """Scores an aira model; build it from a Loaded model, or from `path=` (lm-eval's model_args)."""

    def __init__(self, loaded: Loaded | None = None, path: str | None = None, tokenizer: str | None = None,
                 tag: str | None = None, max_length: int | None = None, batch_size: int | str = 1,
                 device: str | None = None, dtype: str = "fp32", max_batch_size: int | None = None,
                 **_: Any):
        super().__init__()
        if loaded is None:
            if path is None:
                raise LMEvalError("AiraLM needs a loaded model or path= (an export, run dir, HF folder or preset)")
            loaded = load(path, tokenizer=tokenizer, tag=tag, max_length=max_length)
        if dtype not in DTYPES:
            raise LMEvalError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if str(batch_size).startswith("auto"):
            raise LMEvalError("batch_size auto is not supported; give a number of sequences per forward")
        self.loaded = loaded
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = loaded.model.to(device=self._device, dtype=DTYPES[dtype]).eval()
        self.tok = loaded.tokenizer
        self.max_length = int(max_length or loaded.max_length)
        self.batch_size = int(batch_size)
        if self.batch_size < 1 or self.max_length < 2:
            raise LMEvalError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size}, {self.max_length}")

    # ------------------------------------------------------------------------------------ tokenization

    @property
    def eot_token_id(self) -> int:
        return self.tok.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.loaded.prefix_id

    @property
    def tokenizer_name(self) -> str:
        return self.tok.name

    @property
    def device(self) -> torch.device:
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Text -> ids; with the document-start prefix unless add_special_tokens is False (as HF's BOS)."""
        ids = list(self.tok.encode(string))
        return ids if add_special_tokens is False else [self.prefix_token_id, *ids]

    def tok_decode(self, ids: list[int]) -> str:
        return decode(self.tok, ids)

    # ------------------------------------------------------------------------------------ scoring

    @torch.no_grad()
    def _log_probs(self, rows: list[list[int]]) -> torch.Tensor:
        """Right-padded (batch, longest, vocab) float32 log-softmax of the model's next-token logits."""
        width = max(len(r) for r in rows)
        batch = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            batch[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        logits = self.model(batch.to(self._device)).logits
        return F.log_softmax(logits.float(), dim=-1)

    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False,
                              **_: Any) -> list[tuple[float, bool]]:
        """(strings, context ids, continuation ids) -> (sum of continuation log-probs in nats, is greedy)."""
        for _req, _ctx, cont in requests:
            if not cont:
                raise LMEvalError("an lm-eval request has an empty continuation: nothing to score")
            if len(cont) > self.max_length:
                raise LMEvalError(f"a continuation of {len(cont)} tokens is longer than max_length "
                                  f"{self.max_length}; raise --max-length")

        def longest_first(req: tuple[Any, list[int], list[int]]) -> tuple[int, tuple[int, ...]]:
            toks = req[1] + req[2]
            return -len(toks), tuple(toks)

        collator = Collator(requests, sort_fn=longest_first)
        results = []
        for chunk in collator.get_batched(n=self.batch_size):
            rows = [(ctx + cont)[-(self.max_length + 1):][:-1] for _, ctx, cont in chunk]
            logp = self._log_probs(rows)
            for i, (req, _ctx, cont) in enumerate(chunk):
                n, c = len(rows[i]), len(cont)
                scores = logp[i, n - c:n]  # the positions that predict the continuation
                target = torch.tensor(cont, device=scores.device)
                answer = (float(scores.gather(-1, target[:, None]).sum()), bool((scores.argmax(-1) == target).all()))
                results.append(answer)
                if req is not None:
                    self.cache_hook.add_partial("loglikelihood", req, answer)
        return collator.get_original(results)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood (nats) of each whole text, in disjoint windows of max_length predicted tokens."""
        windows, owner = [], []
        for k, req in enumerate(requests):
            (text,) = req.args
            for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(text, add_special_tokens=False), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, ctx, cont))
                owner.append(k)
        totals = [0.0] * len(requests)
        for k, (ll, _greedy) in zip(owner, self._loglikelihood_tokens(windows), strict=True):
            totals[k] += ll
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals

    # ------------------------------------------------------------------------------------ generation

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations, cut at the first of `until` (default: the end-of-text token's text)."""
        jobs = []
        for k, req in enumerate(requests):
            context, gen_kwargs = req.args
            kwargs = dict(gen_kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            until.append(self.tok_decode([self.eot_token_id]))  # as HFLM: the end of text also stops
            max_new = int(kwargs.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
            if kwargs.pop("do_sample", False) or float(kwargs.pop("temperature", 0.0) or 0.0) > 0:
                raise LMEvalError("generate_until: only greedy decoding is implemented (do_sample/temperature)")
            room = max(1, self.max_length - max_new)  # keep the prompt plus the generation within max_length
            ids = self.tok_encode(context)[-room:]
            jobs.append((k, ids, until, max_new))
        out: list[str] = [""] * len(jobs)
        # Prompts of one length share a batch: no padding, so recurrent states need no masking.
        jobs.sort(key=lambda j: (-len(j[1]), j[0]))
        i = 0
        while i < len(jobs):
            group = [jobs[i]]
            while (i + len(group) < len(jobs) and len(group) < self.batch_size
                   and len(jobs[i + len(group)][1]) == len(jobs[i][1])):
                group.append(jobs[i + len(group)])
            for (k, _, until, _), text in zip(group, self._greedy(group), strict=True):
                out[k] = text
                self.cache_hook.add_partial("generate_until", requests[k].args, text)
            i += len(group)
        return out

    @torch.no_grad()
    def _greedy(self, group: list[tuple[int, list[int], list[str], int]]) -> list[str]:
        """Decode a batch of equal-length prompts greedily, one token per step from the cached states."""
        prompt = torch.tensor([ids for _, ids, _, _ in group], dtype=torch.long, device=self._device)
        steps = max(m for *_, m in group)
        states = new_states(self.model)
        logits = self.model(prompt, states=states).logits[:, -1]
        new: list[list[int]] = [[] for _ in group]
        texts: list[str | None] = [None] * len(group)
        for _ in range(steps):
            nxt = logits[..., : self.tok.vocab_size].float().argmax(-1)  # only ids the tokenizer can decode
            for b, (_, _, until, max_new) in enumerate(group):
                if texts[b] is not None:
                    continue
                if int(nxt[b]) == self.eot_token_id:  # special tokens may decode to "": stop on the id
                    texts[b] = self.tok_decode(new[b])
                    continue
                new[b].append(int(nxt[b]))
                text = self.tok_decode(new[b])
                cut = min((text.find(s) for s in until if s and s in text), default=-1)
                if cut >= 0:
                    texts[b] = text[:cut]
                elif len(new[b]) >= max_new:
                    texts[b] = text
            if all(t is not None for t in texts):
                break
            logits = self.model(nxt[:, None], states=states).logits[:, -1]
        return [t if t is not None else self.tok_decode(n) for t, n in zip(texts, new, strict=True)]
