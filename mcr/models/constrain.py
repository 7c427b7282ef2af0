"""Constrained tool calls for local models: decoding that can only write a valid call.

The grammar is one ``<tool_call>`` block holding ``{"name": ..., "arguments": ...}``
whose arguments follow the JSON schema of the named tool (the registered tools plus
the answer form), optionally after a ``<think>`` section. A reply that is not a tool call
can be held to a JSON schema the same way (:meth:`ToolCallGrammar.processor` with
``reply=``): the verifier's verdict, for one, is then always readable. It is compiled with
xgrammar against the model's tokenizer and applied as a logits processor, so every
token the model may pick keeps the text a prefix of a valid call; once the call is
complete only a stop token is allowed.

A call cut off by the token limit is no call at all, so the reply must end in time:

- schemas are bounded before compiling (:func:`bounded_schema`): numbers get a
  range, arrays a size, strings that hold a time span a ``HH:MM:SS.s-HH:MM:SS.s``
  pattern, other strings a pattern of plain characters (xgrammar's ``maxLength``
  alone lets raw control characters through, which is not JSON). String lengths are
  not bounded by default: every allowed length is a grammar state, and on a
  262,144-token vocabulary 240 of them take half a minute to compile;
- instead, when the reply nears its token limit (or ``Bounds.call_tokens``, or the
  ``<think>`` section its own limit), the processor favours, among the tokens the grammar allows, those that
  close what is open: a quote inside free text, else brackets and braces, and the
  closing tag of the reasoning; so the call finishes within the limit.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from typing import Any, Sequence

PLAIN_TEXT = r'[^\x00-\x1f"\\]'  # a character JSON can hold unescaped, quotes and backslashes aside
SPAN_NAMES = ("span", "spans", "evidence", "window", "interval")
RESERVE_TOKENS = 48  # kept for closing a call: the rest of a span, required keys, brackets, the end tag


class ConstraintError(RuntimeError):
    """The grammar could not be built or followed."""


@dataclass(frozen=True)
class Bounds:
    """Limits for what a schema leaves open, and the reply's budgets."""

    max_string: int | None = None  # characters; None: any length (closed in time by the budget)
    max_items: int = 8
    max_number: float = 1_000_000
    think_tokens: int = 0  # 0: no <think> section; else the tokens it may take before the call
    call_tokens: int = 256  # after these (past any reasoning), the call is steered to its end
    max_time: float | None = None  # seconds: no time in a span may pass this (the video's length)


def _two_digits(low: int, high: int) -> str:
    """A regex for the two-digit numbers ``low``..``high`` (00-99), zero-padded."""
    parts = []
    for tens in range(low // 10, high // 10 + 1):
        a = low % 10 if tens == low // 10 else 0
        b = high % 10 if tens == high // 10 else 9
        parts.append(f"{tens}" + (str(a) if a == b else f"[{a}-{b}]"))
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def time_pattern(limit: float | None = None) -> str:
    """A regex for ``HH:MM:SS`` or ``HH:MM:SS.s`` times, none later than ``limit`` seconds."""
    any_time = r"[0-9]{2}:[0-5][0-9]:[0-5][0-9](\.[0-9])?"
    if limit is None or limit >= 100 * 3600:
        return any_time
    whole = int(max(0.0, limit))
    tenths = min(9, int(round((max(0.0, limit) - whole) * 10, 6)))
    h, m, s = whole // 3600, whole // 60 % 60, whole % 60
    below = []  # every whole second before ``whole``, with any tenth
    if h:
        below.append(_two_digits(0, h - 1) + ":[0-5][0-9]:[0-5][0-9]")
    if m:
        below.append(f"{h:02d}:" + _two_digits(0, m - 1) + ":[0-5][0-9]")
    if s:
        below.append(f"{h:02d}:{m:02d}:" + _two_digits(0, s - 1))
    last = f"{h:02d}:{m:02d}:{s:02d}" + (r"(\.0)?" if tenths == 0 else rf"(\.[0-{tenths}])?")
    if not below:
        return last
    return "((" + "|".join(below) + r")(\.[0-9])?|" + last + ")"


def span_pattern(limit: float | None = None) -> str:
    """A regex for a ``start-end`` span whose times lie within ``limit`` seconds."""
    t = time_pattern(limit)
    return f"{t}-{t}"


SPAN_PATTERN = span_pattern()  # any span, when the video's length is not known


def _is_span(name: str, schema: dict, parent: dict | None) -> bool:
    text = " ".join(str(s.get("description", "")) for s in (schema, parent or {}))
    return name.lower() in SPAN_NAMES or "HH:MM:SS" in text


def _repeat(unit: str, low: int, high: int | None) -> str:
    """``unit{low,high}`` written in pieces of at most 128 (xgrammar's largest regex repeat)."""
    if high is None:
        return unit + "*" if low == 0 else _repeat(unit, low, low) + unit + "*"
    pieces = []
    while high > 0 or low > 0:
        take_high, take_low = min(high, 128), min(low, 128)
        pieces.append(f"{unit}{{{take_low},{take_high}}}")
        high, low = high - take_high, low - take_low
    return "".join(pieces) or f"{unit}{{0,0}}"


def bounded_schema(schema: Any, bounds: Bounds = Bounds(), name: str = "", parent: dict | None = None) -> Any:
    """A copy of a JSON schema with every open-ended value given a limit (see the module's notes)."""
    if isinstance(schema, list):
        return [bounded_schema(s, bounds, name, parent) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = copy.copy(schema)
    kind = out.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    fixed = "enum" in out or "const" in out
    if "string" in kinds and not fixed and "pattern" not in out and "format" not in out:
        if _is_span(name, out, parent):
            out["pattern"] = span_pattern(bounds.max_time)
        else:  # plain text: no control characters, quotes or backslashes
            low = int(out.pop("minLength", 0))
            high = out.pop("maxLength", None)
            if bounds.max_string is not None:
                high = bounds.max_string if high is None else min(int(high), bounds.max_string)
            out["pattern"] = _repeat(PLAIN_TEXT, low, None if high is None else max(low, int(high)))
    if kinds & {"integer", "number"} and not fixed:
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -bounds.max_number
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = bounds.max_number
    if "array" in kinds:
        out["maxItems"] = max(out.get("minItems", 0), min(out.get("maxItems", bounds.max_items), bounds.max_items))
        if "items" in out:
            out["items"] = bounded_schema(out["items"], bounds, name, out)
    if "properties" in out:
        out["properties"] = {k: bounded_schema(v, bounds, k, out) for k, v in out["properties"].items()}
    for key in ("anyOf", "oneOf", "allOf"):
        if key in out:
            out[key] = bounded_schema(out[key], bounds, name, parent)
    return out


def call_schema(tools: Sequence[dict], bounds: Bounds = Bounds()) -> dict:
    """One JSON object naming one of ``tools`` with arguments that fit its schema."""
    options = []
    for t in tools:
        fn = t.get("function", t)
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": bounded_schema(params, bounds)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if not options:
        raise ConstraintError("no tools to constrain the call to")
    return options[0] if len(options) == 1 else {"anyOf": options}


def _literal(text: str) -> str:
    return json.dumps(text)


def closing_tokens(decoded_vocab: Sequence[bytes]) -> tuple[list[int], list[int], list[int]]:
    """``(quote_closers, closers, letters)``: tokens that are a quote followed only by brackets
    and braces (they end a string), tokens of brackets and braces alone (they end an array or
    object), and a few word tokens (allowed only inside free text, so they tell where we are).
    """
    quoted, bare, letters = [], [], []
    for i, raw in enumerate(decoded_vocab):
        text = raw.decode("utf-8", "ignore").strip()
        if text[:1] == '"' and set(text[1:]) <= set("]}"):
            quoted.append(i)
        elif text and set(text) <= set("]}"):
            bare.append(i)
        elif raw in (b"a", b"e", b"i", b"o", b"n", b"s", b"t", b"x", b"A", b"E", b" a", b" the", b" and"):
            letters.append(i)
    return quoted, bare, letters


class ToolCallGrammar:
    """Compiles call grammars for one tokenizer and hands out a logits processor per ``generate``.

    Args:
        tokenizer: the model's Hugging Face tokenizer.
        vocab_size: the width of the model's logits (may exceed the tokenizer's size).
        stop_token_ids: tokens that end a reply; the only ones allowed once the call is complete.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        try:
            import xgrammar as xgr
        except ImportError:
            raise ConstraintError(
                "constrained decoding needs xgrammar: pip install 'mcr-agent[models]' "
                "(or turn it off with constrain=False / --no-constrain)"
            ) from None
        self._xgr = xgr
        self.vocab_size = int(vocab_size)
        self.stop_token_ids = sorted({int(i) for i in stop_token_ids})
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_token_ids
        )
        self.compiler = xgr.GrammarCompiler(info, max_threads=2)
        self.decoded_vocab = list(info.decoded_vocab) + [b""] * max(0, self.vocab_size - len(info.decoded_vocab))
        self.quote_closers, self.closers, self.letters = closing_tokens(info.decoded_vocab)
        close_think = b"\n</think>\n\n<tool_call>\n"
        # what ends the reasoning: a piece of the closing literal holding "<" (never reasoning text),
        # else its start ("\n...")
        self.think_end = {
            i: (2000.0 if b"<" in raw else 1000.0) + len(raw)
            for i, raw in enumerate(self.decoded_vocab)
            if raw and raw in close_think and (b"<" in raw or close_think.startswith(raw))
        }
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()

    def grammar(
        self, tools: Sequence[dict], bounds: Bounds = Bounds(), opened_think: bool = False, reply: dict | None = None
    ) -> Any:
        """The xgrammar ``Grammar`` for one call to one of ``tools``, or (``reply``) for one
        JSON object following that schema, with no tool-call tags."""
        xgr = self._xgr
        schema = bounded_schema(reply, bounds) if reply is not None else call_schema(tools, bounds)
        body = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
        head = "" if reply is not None else "<tool_call>\n"
        if bounds.think_tokens > 0:
            opening = "" if opened_think else _literal("<think>\n")
            closing = _literal("\n</think>\n\n" + head)
            start = xgr.Grammar.from_ebnf(f"root ::= {opening} [^<]* {closing}")
        elif head:
            start = xgr.Grammar.from_ebnf(f"root ::= {_literal(head)}")
        else:
            return body
        if reply is not None:
            return xgr.Grammar.concat(start, body)
        end = xgr.Grammar.from_ebnf(f"root ::= {_literal(chr(10) + '</tool_call>')}")
        return xgr.Grammar.concat(start, body, end)

    def compiled(
        self, tools: Sequence[dict], bounds: Bounds = Bounds(), opened_think: bool = False, reply: dict | None = None
    ) -> Any:
        shape = [
            bounds.max_string,
            bounds.max_items,
            bounds.max_number,
            bounds.think_tokens > 0,
            opened_think,
            bounds.max_time,
        ]
        key = json.dumps([list(tools), shape, reply], sort_keys=True, default=str)
        with self._lock:
            found = self._compiled.get(key)
            if found is None:
                what = "reply" if reply is not None else "tool-call"
                try:
                    found = self.compiler.compile_grammar(self.grammar(tools, bounds, opened_think, reply))
                except Exception as exc:  # xgrammar reports bad schemas as RuntimeError
                    raise ConstraintError(f"cannot build the {what} grammar: {exc}") from None
                self._compiled[key] = found
        return found

    def processor(
        self,
        tools: Sequence[dict],
        bounds: Bounds = Bounds(),
        opened_think: bool = False,
        max_new_tokens: int | None = None,
        reply: dict | None = None,
    ) -> Any:
        """A fresh logits processor for one ``generate`` call (it keeps that call's state)."""
        limit = bounds.call_tokens + bounds.think_tokens + RESERVE_TOKENS
        limit = limit if max_new_tokens is None else min(limit, max_new_tokens)
        return GrammarLogitsProcessor(
            self, self.compiled(tools, bounds, opened_think, reply), limit, bounds.think_tokens
        )

    def matcher(self, tools: Sequence[dict], bounds: Bounds = Bounds()) -> Any:
        """An xgrammar ``GrammarMatcher`` for checking text against the grammar."""
        return self._xgr.GrammarMatcher(self.compiled(tools, bounds))


def _base_processor() -> type:
    from transformers import LogitsProcessor

    return LogitsProcessor


class GrammarLogitsProcessor(_base_processor()):
    """Masks, at each step, every token that would leave the grammar (batch of one), and
    near the budget's end favours the allowed tokens that close what is open."""

    def __init__(
        self, grammar: ToolCallGrammar, compiled: Any, max_new_tokens: int | None = None, think_tokens: int = 0
    ) -> None:
        import torch
        import xgrammar as xgr

        self._xgr = xgr
        self.matcher = xgr.GrammarMatcher(compiled)
        self.vocab_size = grammar.vocab_size
        self.bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        self.quote_closers = torch.tensor(grammar.quote_closers, dtype=torch.long)
        self.closers = torch.tensor(grammar.closers, dtype=torch.long)
        self.letters = grammar.letters
        self.think_end_ids = torch.tensor(sorted(grammar.think_end), dtype=torch.long)
        self.think_end_bias = torch.tensor([grammar.think_end[i] for i in sorted(grammar.think_end)])
        self.decoded = grammar.decoded_vocab
        self.seen = b""  # the reasoning so far, to see where it ends
        self.close_at = None if max_new_tokens is None else max(1, max_new_tokens - RESERVE_TOKENS)
        self.thinking = think_tokens > 0
        self.think_tokens = think_tokens
        self.started = False
        self.tokens = 0

    @property
    def complete(self) -> bool:
        return self.matcher.is_terminated()

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[0] != 1:
            raise ConstraintError("constrained decoding runs one sequence at a time")
        if self.started and not self.matcher.is_terminated():
            token = int(input_ids[0, -1])
            if not self.matcher.accept_token(token):
                raise ConstraintError(f"token {token} left the grammar")
            self.tokens += 1
            if self.thinking:
                self.seen += self.decoded[token]
                self.thinking = b"</think>" not in self.seen
        self.started = True
        if self.matcher.is_terminated():
            return scores
        self.matcher.fill_next_token_bitmask(self.bitmask)
        device = scores.device
        work = scores if device.type in ("cpu", "cuda") else scores.to("cpu")
        mask = self.bitmask if work.device.type == "cpu" else self.bitmask.to(work.device)
        self._xgr.apply_token_bitmask_inplace(work, mask, vocab_size=min(self.vocab_size, work.shape[-1]))
        if self.thinking and self._closing_time():  # end the reasoning: the closing tag is favoured
            ids = self.think_end_ids.to(work.device)
            work[0, ids] = work[0, ids] + self.think_end_bias.to(work.device, work.dtype)
        elif self._closing_time():  # inside free text end the string, else close arrays and objects
            ids = (self.quote_closers if self._in_text() else self.closers).to(work.device)
            work[0, ids] = work[0, ids] + 2000.0
        return work if work is scores else work.to(device)

    def _in_text(self) -> bool:
        words = self.bitmask[0]
        return any(int(words[i // 32]) >> (i % 32) & 1 for i in self.letters)

    def _closing_time(self) -> bool:
        if self.thinking:
            return self.tokens >= self.think_tokens or (self.close_at is not None and self.tokens >= self.close_at // 2)
        return self.close_at is not None and self.tokens >= self.close_at


__all__ = [
    "Bounds",
    "ConstraintError",
    "GrammarLogitsProcessor",
    "SPAN_PATTERN",
    "ToolCallGrammar",
    "bounded_schema",
    "call_schema",
    "closing_tokens",
    "span_pattern",
    "time_pattern",
]
