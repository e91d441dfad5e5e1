#!/usr/bin/env python3
"""An OpenAI-compatible HTTP server for nexplain's tests (Python 3 standard library only).

It serves POST /v1/chat/completions, POST /v1/completions and GET /v1/models on 127.0.0.1,
answers deterministically from the request, and can misbehave on purpose: rate limits with
x-ratelimit-* headers, injected 429/500/503/400, malformed or truncated bodies, slow answers and
dropped connections. Every API request is logged as one JSON line, so tests can check what the
client really sent. It prints its port on stdout (one line) when ready; --port 0 = ephemeral.

Deterministic answers
---------------------
value(tok) = FNV-1a-32(UTF-8 of tok, as written on its line) % 11. Lines are `tok<TAB>...`.

* Simulation, all at once (POST /v1/completions, echo + logprobs): the prompt is split into
  tokens by TOKEN_RE (tab and newline are tokens of their own). At every token "unknown" that
  follows a tab, top_logprobs is {v: ln .75, w: ln .20, "unknown": ln .05} with v = value(tok of
  that line) and w = (v + 1) % 11, so the expected value over "0".."10", renormalised, is
  (0.75 v + 0.2 w) / 0.95. Other positions: {their own token: -0.1}. The first token has null
  logprob and null top_logprobs (as vLLM). max_tokens >= 1 appends one generated "\\n".
* Simulation in chat (lines `tok<TAB>unknown` in the last user message): the answer is
  "<start>\\n" + `tok<TAB>v` per line + "<end>"; with logprobs, every value token carries the
  same three top_logprobs as above (cut to top_logprobs entries).
* Explanation in chat (lines `tok<TAB>N` with integer N in the last user message): the answer is
  `the token "T"` where T has the largest sum of N (ties: smallest T); "no clear pattern" when
  every N is 0.
* Any other chat: "echo " + the first 12 hex digits of the request hash.
Usage: prompt tokens = TOKEN_RE tokens of the prompt (chat: of every message, + 4 per message
+ 3); completion tokens = TOKEN_RE tokens of the answer.

Request hash (logged as "hash"): sha256 of b"POST " + path without the /v1 prefix + b"\\n" +
the raw body, which is exactly nexplain's request_hash.

Faults (--fault, repeatable; or POST /control {"faults": [...]}):
  KIND[:p=0.2][:nth=1,3][:every=4][:retry_after=1][:delay=2]
  KIND: 429 500 503 400 malformed truncated slow drop
  A fault fires for the request numbered n (1-based, API requests only) when n is in nth, or
  n % every == 0, or with probability p; the first matching fault wins. retry_after (429, 503)
  is sent verbatim as Retry-After (seconds or an HTTP-date); delay (slow) sleeps before answering.

Rate limit (--rpm, --tpm, --burst-seconds): token buckets with capacity rate x burst_seconds
(at least 1 request), continuous refill, starting full. A request costs 1 request and
prompt_tokens + max_tokens tokens, refunded down to the real usage after answering. Over the
limit: 429 (logged reason "rate_limit") with Retry-After (whole seconds) and x-ratelimit-*
headers, which every API answer carries when a limit is set.

Log (--log FILE): one JSON object per API request: n, t (unix time), path, hash, status,
reason (ok, fault, rate_limit, auth, model, bad_request), fault, peer (client port), model,
prompt_tokens, completion_tokens. The API key is never logged.

POST /control (no auth): JSON with any of faults, rpm, tpm, burst_seconds, reset_counter.
GET /control: {"requests": n}.
"""

import argparse
import hashlib
import json
import math
import os
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_RE = re.compile(r"\n|\t| ?[^\s]+|[^\S\t\n]+")
FAULT_KINDS = {"429", "500", "503", "400", "malformed", "truncated", "slow", "drop"}
LN = {"v": math.log(0.75), "w": math.log(0.20), "other": math.log(0.05)}


def tokenize(text):
    return TOKEN_RE.findall(text)


def fnv1a32(text):
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def value_of(tok):
    return fnv1a32(tok) % 11


def top_for_value(v, n):
    w = (v + 1) % 11
    top = [(str(v), LN["v"]), (str(w), LN["w"]), ("unknown", LN["other"])]
    return top[: max(0, n)]


def go_duration(seconds):
    """OpenAI-style duration: 20ms, 1.5s, 6m0s."""
    if seconds < 1.0:
        return "%dms" % int(round(seconds * 1000))
    minutes, secs = divmod(seconds, 60.0)
    s = ("%.3f" % secs).rstrip("0").rstrip(".")
    return ("%dm%ss" % (int(minutes), s)) if minutes >= 1 else (s + "s")


def parse_fault(spec):
    parts = spec.split(":")
    fault = {"kind": parts[0]}
    for p in parts[1:]:
        key, _, val = p.partition("=")
        if key == "p":
            fault["p"] = float(val)
        elif key == "nth":
            fault["nth"] = [int(x) for x in val.split(",") if x]
        elif key == "every":
            fault["every"] = int(val)
        elif key == "retry_after":
            fault["retry_after"] = val
        elif key == "delay":
            fault["delay"] = float(val)
        else:
            raise ValueError("unknown fault option %r in %r" % (key, spec))
    check_fault(fault)
    return fault


def check_fault(fault):
    if fault.get("kind") not in FAULT_KINDS:
        raise ValueError("unknown fault kind %r (known: %s)" % (fault.get("kind"), ", ".join(sorted(FAULT_KINDS))))


class Bucket:
    def __init__(self, per_minute, burst_seconds, minimum):
        self.rate = per_minute / 60.0
        self.capacity = max(minimum, self.rate * burst_seconds)
        self.level = self.capacity
        self.updated = time.monotonic()

    def refill(self):
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, cost):
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def reset_seconds(self):
        return max(0.0, (self.capacity - self.level) / self.rate)


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.n = 0
        self.rng = random.Random(args.seed)
        self.models = [m for m in args.models.split(",") if m]
        self.api_key = args.api_key
        self.echo_key = args.echo_key_in_errors
        self.faults = [parse_fault(f) for f in args.fault]
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None
        self.burst_seconds = args.burst_seconds
        self.set_limits(args.rpm, args.tpm)

    def set_limits(self, rpm, tpm):
        self.rpm, self.tpm = rpm, tpm
        self.req_bucket = Bucket(rpm, self.burst_seconds, 1.0) if rpm > 0 else None
        self.tok_bucket = Bucket(tpm, self.burst_seconds, 1.0) if tpm > 0 else None

    def next_request(self):
        with self.lock:
            self.n += 1
            n = self.n
            fault = None
            for f in self.faults:
                hit = n in f.get("nth", ())
                hit = hit or (f.get("every") and n % f["every"] == 0)
                hit = hit or (f.get("p", 0.0) > 0 and self.rng.random() < f["p"])
                if hit:
                    fault = f
                    break
            return n, fault

    def write_log(self, entry):
        if self.log is None:
            return
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.log_lock:
            self.log.write(line)
            self.log.flush()

    def rate_headers(self):
        h = {}
        if self.req_bucket:
            b = self.req_bucket
            h["x-ratelimit-limit-requests"] = str(int(self.rpm))
            h["x-ratelimit-remaining-requests"] = str(max(0, int(math.floor(b.level))))
            h["x-ratelimit-reset-requests"] = go_duration(b.reset_seconds())
        if self.tok_bucket:
            b = self.tok_bucket
            h["x-ratelimit-limit-tokens"] = str(int(self.tpm))
            h["x-ratelimit-remaining-tokens"] = str(max(0, int(math.floor(b.level))))
            h["x-ratelimit-reset-tokens"] = go_duration(b.reset_seconds())
        return h

    def try_admit(self, tokens):
        """Returns (admitted, retry_after_seconds, headers)."""
        with self.lock:
            waits = []
            for b, cost in ((self.req_bucket, 1.0), (self.tok_bucket, tokens)):
                if b:
                    b.refill()
                    waits.append(b.wait(cost))
            wait = max(waits) if waits else 0.0
            if wait > 0.0:
                return False, wait, self.rate_headers()
            if self.req_bucket:
                self.req_bucket.level -= 1.0
            if self.tok_bucket:
                self.tok_bucket.level -= tokens
            return True, 0.0, self.rate_headers()

    def refund(self, tokens):
        if tokens <= 0 or not self.tok_bucket:
            return
        with self.lock:
            b = self.tok_bucket
            b.refill()
            b.level = min(b.capacity, b.level + tokens)


# ---------------------------------------------------------------- deterministic answers

def activation_lines(text):
    """(token, field) for every `token<TAB>field` line."""
    out = []
    for line in text.split("\n"):
        tok, tab, field = line.partition("\t")
        if tab:
            out.append((tok, field.strip()))
    return out


def last_user_text(messages):
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def chat_answer(body, request_hash):
    """(content, value_positions): value positions are indices of tokens that are values."""
    lines = activation_lines(last_user_text(body.get("messages", [])))
    unknown = [tok for tok, field in lines if field == "unknown"]
    if unknown:
        return "<start>\n" + "".join("%s\t%d\n" % (tok, value_of(tok)) for tok in unknown) + "<end>", True
    numeric = [(tok, int(field)) for tok, field in lines if re.fullmatch(r"-?\d+", field)]
    if numeric:
        sums = {}
        for tok, v in numeric:
            sums[tok] = sums.get(tok, 0) + v
        best = max(sums.values())
        if best <= 0:
            return "no clear pattern", False
        tok = min(t for t, s in sums.items() if s == best)
        return 'the token "%s"' % tok, False
    return "echo " + request_hash[:12], False


def chat_logprobs(tokens, simulation, top_n):
    content = []
    for i, tok in enumerate(tokens):
        # In a simulation answer a value is the token after a tab.
        if simulation and i > 0 and tokens[i - 1] == "\t" and tok.isdigit():
            top = top_for_value(int(tok), top_n)
            lp = LN["v"]
        else:
            top = [(tok, -0.1)][:top_n]
            lp = -0.1
        content.append({
            "token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": l, "bytes": list(t.encode("utf-8"))} for t, l in top],
        })
    return {"content": content}


def completion_logprobs(prompt_tokens, generated, n_top, echo):
    tokens, token_lps, tops, offsets = [], [], [], []
    offset = 0
    all_tokens = (prompt_tokens if echo else []) + generated
    for i, tok in enumerate(all_tokens):
        is_prompt = echo and i < len(prompt_tokens)
        if is_prompt and i == 0:
            lp, top = None, None
        elif is_prompt and tok == "unknown" and i >= 2 and all_tokens[i - 1] == "\t":
            j = i - 2  # the line's token is everything from the last newline to the tab
            parts = []
            while j >= 0 and all_tokens[j] != "\n":
                parts.append(all_tokens[j])
                j -= 1
            v = value_of("".join(reversed(parts)))
            lp = LN["other"]
            top = dict(top_for_value(v, n_top))
        else:
            lp = -0.1 if is_prompt else -0.5
            top = dict([(tok, lp)][:n_top])
        tokens.append(tok)
        token_lps.append(lp)
        tops.append(top)
        offsets.append(offset)
        offset += len(tok)
    return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}


# ---------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "nexplain-test-server/1"

    def log_message(self, fmt, *args):  # the JSONL log is the record; keep stderr quiet
        pass

    @property
    def state(self):
        return self.server.state

    def send_json(self, status, obj, headers=None, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error_body(self, message, kind, code):
        if self.state.echo_key:
            message += " (key: %s)" % self.provided_key()
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def provided_key(self):
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""

    def authorized(self):
        return not self.state.api_key or self.provided_key() == self.state.api_key

    def read_body(self):
        length = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self):
        if self.path == "/control":
            with self.state.lock:
                n = self.state.n
            return self.send_json(200, {"requests": n})
        if self.path.rstrip("/") == "/v1/models":
            if not self.authorized():
                return self.send_json(401, self.error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "nexplain-test"} for m in self.state.models]
            return self.send_json(200, {"object": "list", "data": data})
        self.send_json(404, {"error": {"message": "no route %s" % self.path, "type": "invalid_request_error"}})

    def do_POST(self):
        body = self.read_body()
        if self.path == "/control":
            return self.control(body)
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            return self.send_json(404, {"error": {"message": "no route %s" % self.path, "type": "invalid_request_error"}})
        try:
            self.api(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to answer

    def control(self, body):
        st = self.state
        try:
            cfg = json.loads(body or b"{}")
            with st.lock:
                if "faults" in cfg:
                    for f in cfg["faults"]:
                        check_fault(f)
                    st.faults = cfg["faults"]
                if "burst_seconds" in cfg:
                    st.burst_seconds = float(cfg["burst_seconds"])
                if "rpm" in cfg or "tpm" in cfg or "burst_seconds" in cfg:
                    st.set_limits(float(cfg.get("rpm", st.rpm)), float(cfg.get("tpm", st.tpm)))
                if cfg.get("reset_counter"):
                    st.n = 0
        except (ValueError, TypeError, KeyError) as e:
            return self.send_json(400, {"error": {"message": str(e)}})
        self.send_json(200, {"ok": True})

    def api(self, body):
        st = self.state
        api_path = self.path[len("/v1"):]
        request_hash = hashlib.sha256(b"POST " + api_path.encode() + b"\n" + body).hexdigest()
        n, fault = st.next_request()
        entry = {"n": n, "t": time.time(), "path": self.path, "hash": request_hash, "peer": self.client_address[1],
                 "fault": fault["kind"] if fault else None, "model": None, "prompt_tokens": 0, "completion_tokens": 0}

        def finish(status, reason, obj=None, headers=None, raw=None):
            entry["status"], entry["reason"] = status, reason
            st.write_log(entry)
            if status is not None:
                self.send_json(status, obj, headers, raw)

        if not self.authorized():
            return finish(401, "auth", self.error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
        if fault and fault["kind"] == "drop":
            self.close_connection = True
            return finish(None, "fault")
        if fault and fault["kind"] == "slow":
            time.sleep(float(fault.get("delay", 2.0)))
        try:
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            return finish(400, "bad_request", self.error_body("We could not parse the JSON body of your request: %s" % e,
                                                              "invalid_request_error", None))
        model = req.get("model")
        entry["model"] = model
        if model not in st.models:
            return finish(404, "model", self.error_body("The model `%s` does not exist or you do not have access to it." % model,
                                                        "invalid_request_error", "model_not_found"))
        kind = fault["kind"] if fault else None
        if kind == "400":
            return finish(400, "fault", self.error_body("Injected bad request.", "invalid_request_error", None))
        if kind in ("429", "500", "503"):
            headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
            msg = {"429": "Rate limit reached (injected).", "500": "The server had an error (injected).",
                   "503": "The engine is currently overloaded (injected)."}[kind]
            return finish(int(kind), "fault", self.error_body(msg, "server_error", None), headers)

        is_chat = api_path == "/chat/completions"
        try:
            if is_chat:
                messages = req["messages"]
                prompt_tokens = sum(len(tokenize(m.get("content") or "")) + 4 for m in messages) + 3
            else:
                prompt = req["prompt"]
                if not isinstance(prompt, str):
                    raise ValueError("prompt must be a string")
                prompt_tokens = len(tokenize(prompt))
            max_tokens = int(req.get("max_tokens", 16))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            return finish(400, "bad_request", self.error_body("Invalid request: %s" % e, "invalid_request_error", None))

        admitted, wait, rate_headers = st.try_admit(prompt_tokens + max_tokens)
        if not admitted:
            rate_headers["Retry-After"] = str(max(1, int(math.ceil(wait))))
            return finish(429, "rate_limit", self.error_body("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
                          rate_headers)

        if is_chat:
            content, simulation = chat_answer(req, request_hash)
            tokens = tokenize(content)
            finish_reason = "stop"
            if len(tokens) > max_tokens:
                tokens, finish_reason = tokens[:max_tokens], "length"
                content = "".join(tokens)
            logprobs = None
            if req.get("logprobs"):
                logprobs = chat_logprobs(tokens, simulation, int(req.get("top_logprobs") or 0))
            completion_tokens = len(tokens)
            obj = {"id": "chatcmpl-%d" % n, "object": "chat.completion", "created": int(time.time()), "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": logprobs,
                                "finish_reason": finish_reason}]}
        else:
            ptoks = tokenize(prompt)
            generated = ["\n"] if max_tokens >= 1 else []
            echo = bool(req.get("echo"))
            text = (prompt if echo else "") + "".join(generated)
            logprobs = None
            if req.get("logprobs") is not None:
                logprobs = completion_logprobs(ptoks, generated, int(req["logprobs"]), echo)
            completion_tokens = len(generated)
            obj = {"id": "cmpl-%d" % n, "object": "text_completion", "created": int(time.time()), "model": model,
                   "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": "length"}]}
        obj["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens}
        st.refund(max_tokens - completion_tokens)
        entry["prompt_tokens"], entry["completion_tokens"] = prompt_tokens, completion_tokens

        if kind == "malformed":
            return finish(200, "fault", raw=b'{"id": "x", "choices": [{"message": {"content": "trunc', headers=rate_headers)
        if kind == "truncated":
            # Promise the whole body, send half of it, then hang up.
            full = json.dumps(obj).encode("utf-8")
            entry["status"], entry["reason"] = 200, "fault"
            st.write_log(entry)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(full)))
            self.end_headers()
            self.wfile.write(full[: len(full) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        return finish(200, "ok", obj, rate_headers)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; the default backlog of 5 drops them


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--models", default="test-model", help="comma-separated model names served")
    ap.add_argument("--api-key", default="", help="require Authorization: Bearer KEY")
    ap.add_argument("--api-key-env", default="", help="like --api-key, the key read from this environment variable")
    ap.add_argument("--echo-key-in-errors", action="store_true", help="quote the client's key in error messages")
    ap.add_argument("--rpm", type=float, default=0.0)
    ap.add_argument("--tpm", type=float, default=0.0)
    ap.add_argument("--burst-seconds", type=float, default=60.0)
    ap.add_argument("--fault", action="append", default=[])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log", default="")
    args = ap.parse_args()
    if args.api_key_env:
        args.api_key = os.environ.get(args.api_key_env, "")
        if not args.api_key:
            ap.error("--api-key-env: %s is not set" % args.api_key_env)
    try:
        state = State(args)
    except ValueError as e:
        ap.error(str(e))
    httpd = Server(("127.0.0.1", args.port), Handler)
    httpd.state = state
    print(httpd.server_address[1], flush=True)
    try:
        httpd.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
