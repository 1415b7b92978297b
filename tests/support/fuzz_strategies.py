"""Hypothesis strategies of tests/test_fuzz_site.py: raw HTTP/1.1 requests,
legal but odd, with one part broken one time in three."""

from __future__ import annotations

import base64
import json
import string
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from support.fuzz_answers import TCHAR
from support.fuzz_harness import FuzzRequest
from support.fuzz_proxy import SUBSCRIPTION, TOKEN

# Strategies.  A request is drawn legal but odd (what Twisted's parser lets
# through: the proxy's own code sees it), and one time in three one part is
# broken (the parser's answer is then checked).  Big payloads come from small
# draws (a depth, a digit count).


def mostly(usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any],
           one_in: int = 10) -> st.SearchStrategy[Any]:
    """C{usual}, and once in C{one_in} draws C{unusual}."""
    return st.integers(0, one_in - 1).flatmap(lambda n: unusual if n == one_in - 1 else usual)


STANDARD_METHODS = [b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS", b"TRACE",
                    b"CONNECT", b"PRI", b"get", b"Post"]
token_bytes = st.text(alphabet=TCHAR, min_size=1, max_size=10).map(str.encode)
methods = mostly(st.sampled_from(STANDARD_METHODS), token_bytes, 4)

ROUTES = [b"/", b"/health", b"/livez", b"/readyz", b"/v1/health", b"/v1/models", b"/v1/models/gpt-4.1",
          b"/v1/models/org/model-x", b"/v1/chat/completions", b"/v1/responses", b"/v1/responses/r1",
          b"/v1/embeddings", b"/v1/files", b"/metrics", b"/status", b"*"]
NAMED_SEGMENTS = [b"v1", b"chat", b"completions", b"responses", b"models", b"health", b"livez",
                  b"metrics", b"status",
                  b"embeddings", b"files", b"gpt-4.1", b"gpt-5", b"org%2Fmodel-x", b".", b"..",
                  b".%2e", b"%2E%2E", b"%2e", b"%2F", b"%2f..", b"%00", b"%25", b"%zz", b"%",
                  b"%C3%A9", b"%FF%FE", b"%E2%80%AE", b";x=1", b"\\..", b"%5C..", b"%u002e", b"~",
                  b"\x7f", b"%252E%252E", b"..;", b".;", b";", b"..;x=1", b"%2e%2e;"]
SAFE = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
segments = st.one_of(
    st.sampled_from(NAMED_SEGMENTS),
    st.text(alphabet=SAFE, max_size=8).map(str.encode),
    st.binary(max_size=4).map(lambda b: b"".join(b"%%%02X" % c for c in b)),
    st.text(max_size=3).map(lambda t: quote(t, safe="").encode()),
    st.integers(0x7F, 0xB0).map(lambda c: b"x" + bytes([c])),  # Twisted lets 0x7f-0xb0 through
)
PREFIXES = [b"/", b"/v1/", b"/v1/", b"//v1/", b"/v1/chat/", b"/v1/models/", b"/v1/responses/",
            b"/health/../v1/", b"/v1/./", b"/V1/", b"", b"*", b"http://evil.example/v1/", b"/%76%31/",
            b"xv1/", b"*v1/"]
queries = mostly(st.just(b""), st.one_of(
    st.text(alphabet="abz=&%[],+09/?#;:@", max_size=12).map(lambda t: b"?" + t.encode()),
    st.sampled_from([b"?api-version=1", b"?a=%00", b"?%", b"?x=%zz&&=", b"?q=%C3%A9"]),
), 2)


@st.composite
def targets(draw: st.DrawFn) -> bytes:
    """A request target: a route of the proxy, or a path made of odd segments."""
    if draw(st.integers(0, 19)) == 0:  # now and then very long: 414 past 16 kB
        return b"/v1/" + b"x" * draw(st.integers(1000, 20000))
    if draw(st.booleans()):
        ending = mostly(st.just(b""), st.sampled_from([b"/", b"//", b"/x"]), 3)
        path = draw(st.sampled_from(ROUTES)) + draw(ending)
    else:
        path = draw(st.sampled_from(PREFIXES)) + b"/".join(draw(st.lists(segments, max_size=4)))
    return path + draw(queries)


KNOWN_NAMES = [b"Content-Type", b"Origin", b"X-Request-ID", b"x-request-id", b"Connection",
               b"Keep-Alive", b"Expect", SUBSCRIPTION, SUBSCRIPTION.upper(), b"Proxy-Authorization",
               b"Accept-Encoding", b"Accept", b"Cookie", b"TE", b"Upgrade", b"Trailer",
               b"Access-Control-Request-Method", b"Access-Control-Request-Headers", b"Host",
               b"Content-Encoding", b"X-Forwarded-For", b"Authorization", b"api-key"]
FRAMING_NAMES = {b"content-length", b"transfer-encoding"}
header_names = st.one_of(st.sampled_from(KNOWN_NAMES), token_bytes).filter(
    lambda name: name.lower() not in FRAMING_NAMES)
KNOWN_VALUES = [b"", b"close", b"keep-alive, " + SUBSCRIPTION, b"Authorization, X-Keep", b"100-continue",
                b"application/json", b"text/event-stream", b"gzip, br", b"http://localhost:3000",
                b"http://127.0.0.1", b"http://[::1]:8080", b"https://app.example",
                b"https://app.example/", b"https://evil.example", b"null", b"http://localhost.evil.example",
                b"POST", b"Bearer wrong", b"forged-key", b"x" * 300, b"a\tb", b"caf\xe9"]
header_values = st.one_of(
    st.sampled_from(KNOWN_VALUES),
    st.text(alphabet=string.printable.strip() + " ", max_size=20).map(str.encode),
    st.binary(max_size=8).map(lambda b: bytes(c | 0x80 for c in b)),  # obs-text
    st.sampled_from([b"\x01\x02", b"\x7f", b"a\x0bb", b"a\x1bb"]),  # controls the parser lets by
)
AUTH_VALUES = [b"Bearer " + TOKEN, b"bearer " + TOKEN, b"BEARER  " + TOKEN + b" ", b"Bearer " + TOKEN + b"x",
               b"Bearer " + TOKEN[:-1], b"Basic " + base64.b64encode(b"u:" + TOKEN), b"Bearer", b"Bearer ",
               TOKEN, b"Token " + TOKEN, b"Bearer\t" + TOKEN, b"Bearer " + TOKEN + b", Bearer x"]
auth_headers = mostly(
    st.just([(b"Authorization", b"Bearer " + TOKEN)]),
    st.lists(st.tuples(st.sampled_from([b"Authorization", b"authorization", b"AUTHORIZATION"]),
                       st.sampled_from(AUTH_VALUES)), max_size=2),
    3,
)

# One broken part of a request, by name.
BAD_FRAMINGS = ["Content-Length: abc", "Content-Length: -1", "Content-Length: 1, 1",
                "Content-Length: 99999", "Content-Length: 0\r\nContent-Length: 5", "Transfer-Encoding: gzip",
                "Transfer-Encoding: chunked\r\nContent-Length: 3", "Content-Length: +3",
                "Content-Length: 100000000000"]
BROKEN: dict[str, st.SearchStrategy[Any]] = {
    "method": st.one_of(st.binary(max_size=6), st.sampled_from([b"", b"G T", b"GET\x00", b"G\xc3\xa9T"])),
    "version": st.sampled_from([b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1", b"",
                                b"HTTP/1.1 x"]),
    "framing": st.sampled_from(BAD_FRAMINGS),
    "header": st.tuples(
        st.one_of(st.sampled_from(KNOWN_NAMES), st.binary(max_size=8),
                  st.sampled_from([b"", b"Bad Name", b"X-\xc3\xa9", b"X:Y", b" X"])),
        st.one_of(st.binary(max_size=12), st.sampled_from([b"a\x00b", b"a\rb", b"a\nb"]))),
    "target": st.one_of(
        st.text(min_size=1, max_size=3).map(lambda t: b"/v1/" + t.encode("utf-8")),  # raw UTF-8
        st.binary(min_size=1, max_size=3).map(lambda b: b"/v1/" + b),
        st.sampled_from([b"/v1/a b", b"/v1/models?q=a b", b"/v1/\x01", b"/v1/files?\x00"])),
}
MALFORMED_JSON = [b"{", b'{"model":', b'{"a":1,}', b"[1,2", b'{"model": "gpt-5"', b"\xef\xbb\xbf{}",
                  b'{"model":"gpt-5"}garbage', b"nul\x00l", b"{'model': 'gpt-5'}", b'{"model":"\xff"}',
                  b'"\xc3"', b'{"model":"gpt-5","stream":true', b"NaN", b"-Infinity", b"{}{}", b"\x00",
                  b'{"model":"gpt-5","max_tokens":1,"x":"\\udfff"}', b'"\\ud800"', b"[\"\\u0000\"]"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(),
    st.text(max_size=6), st.sampled_from(["gpt-5", "GPT-5-mini", "gpt-4.1", "\ud800", "gpt-5\x00"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
huge_numbers = st.one_of(
    st.sampled_from([b"1e999999", b"-1e999999", b"1e-999999", b"0.1e400", b"-0"]),
    st.integers(1, 10000).map(lambda n: b"9" * n),
)


@st.composite
def api_objects(draw: st.DrawFn) -> bytes:
    """A JSON object of the APIs, its fields of any type."""
    fields: dict[str, bytes] = {}
    for name, values in [("model", scalars), ("stream", st.one_of(st.just(True), scalars)),
                         ("max_tokens", scalars), ("max_output_tokens", scalars),
                         ("max_completion_tokens", scalars), ("temperature", scalars),
                         ("messages", json_values), ("input", json_values)]:
        if draw(st.booleans()):
            fields[name] = json.dumps(draw(values)).encode()
    if draw(st.booleans()):
        fields[draw(st.sampled_from(["max_tokens", "temperature", "top_p", "n"]))] = draw(huge_numbers)
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}"


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 50000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    inner = b"1" if opener == b"[" else b"[]"
    if draw(st.booleans()):
        return opener * depth  # never closed
    return b'{"model":"gpt-5","max_tokens":9,"x":' * draw(st.integers(0, 1)) + (
        opener * depth + inner + closer * depth)


request_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(MALFORMED_JSON),
    nested(),
    huge_numbers,
    json_values.map(lambda v: json.dumps(v).encode()),
    api_objects(),
    api_objects(),
)


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    """Any request a client might send: legal but odd, one part broken now and then."""
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    headers += draw(auth_headers)
    if draw(st.integers(0, 4)):
        headers.insert(0, (b"Host", b"proxy.test"))
    headers = draw(st.permutations(headers)) if draw(st.booleans()) else headers
    request = FuzzRequest(
        method=draw(methods), target=draw(targets()), headers=tuple(headers),
        body=draw(request_bodies), framing=draw(st.sampled_from(["length", "length", "chunked", "none"])),
        cuts=tuple(draw(st.lists(st.integers(0, 1 << 16), max_size=3))),
    )
    broken = draw(mostly(st.none(), st.sampled_from(sorted(BROKEN)), 3))
    if broken is None:
        return request
    part = draw(BROKEN[broken])
    if broken == "header":
        at = draw(st.integers(0, len(headers)))
        return replace(request, headers=(*headers[:at], part, *headers[at:]))
    return replace(request, **{broken: part})


API_ROUTES = [(b"/v1/chat/completions", [b"POST"]), (b"/v1/responses", [b"POST"]),
              (b"/v1/embeddings", [b"POST"]), (b"/v1/files", [b"GET", b"POST"]),
              (b"/v1/responses/resp_1/cancel", [b"POST"]), (b"/v1/files/file-1", [b"GET", b"DELETE"]),
              (b"/v1/audio/speech", [b"POST", b"PUT", b"PATCH"]), (b"/v1/health", [b"GET"])]
PLAIN_NAMES = [b"Content-Type", b"Accept", b"X-Custom", b"User-Agent", b"OpenAI-Beta", b"x-stainless-lang"]


@st.composite
def api_requests(draw: st.DrawFn) -> FuzzRequest:
    """A well-formed API request with the token, its body anything."""
    path, allowed = draw(st.sampled_from(API_ROUTES))
    if path == b"/v1/files/file-1":
        # (no "." or ";": a lone "..", or a trailing ";", is another matter; see the bugs below)
        file_id = draw(st.text(alphabet=SAFE.replace(".", "").replace(";", ""), min_size=1, max_size=8))
        path = b"/v1/files/" + file_id.encode()
    query = b"" if path == b"/v1/health" else draw(st.sampled_from([b"", b"?limit=2", b"?ids=[1,2]&x=%2F"]))
    headers = [(b"Host", b"proxy.test"), (b"Authorization", b"Bearer " + TOKEN)]
    headers += draw(st.lists(st.tuples(st.sampled_from(PLAIN_NAMES),
                                       st.text(alphabet=string.ascii_letters + " ;=/-", max_size=20)
                                       .map(lambda t: t.strip().encode())), max_size=3))
    body = b"" if path == b"/v1/health" else draw(st.one_of(request_bodies, st.binary(max_size=2000)))
    return FuzzRequest(method=draw(st.sampled_from(allowed)), target=path + query, headers=tuple(headers),
                       body=body, framing=draw(st.sampled_from(["length", "chunked"])),
                       cuts=tuple(draw(st.lists(st.integers(0, 1 << 16), max_size=3))))


def post(target: bytes, body: bytes, *headers: tuple[bytes, bytes], method: bytes = b"POST",
         framing: str = "length") -> FuzzRequest:
    """An explicit request, with Host and (when one is needed) the token."""
    base = ((b"Host", b"proxy.test"), (b"Authorization", b"Bearer " + TOKEN))
    return FuzzRequest(method, target, headers=base + headers, body=body, framing=framing)


