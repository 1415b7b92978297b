"""Open WebUI's env file as `genai-proxy configure open-webui` writes it
(units: L{genaiproxy.cli.client_configs}): a token is written so that its
readers take it back as it is.  A real shell sources the file in
tests/integration/test_configure_tokens.py; systemd's reading is written
down here from its documentation."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.cli.client_configs import Auth, Setup, env_value, open_webui

# What AUTH_TOKEN may hold (a header value): Latin-1, no line break or NUL.
tokens = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n\0"), min_size=1)


def systemd_value(written: str) -> str:
    """The value systemd's EnvironmentFile= reads from the text after the
    C{=} of one line, by systemd.exec(5): unquoted, leading and trailing
    white space is dropped and a backslash keeps the character after it;
    in double quotes, a backslash before one of C{" \\ ` $} gives that
    character, before any other it stays with it."""
    written = written.strip(" \t")
    if not written.startswith('"'):
        return re.sub(r"\\(.)", r"\1", written)
    assert written.endswith('"') and len(written) >= 2
    return re.sub(r'\\(["\\`$])', r"\1", written[1:-1])


@given(token=tokens)
def test_systemd_reads_back_any_token(token):
    """Whatever characters the token holds, the value written for it is
    read back by systemd's EnvironmentFile= rules as the token itself."""
    assert systemd_value(env_value(token)) == token


@given(token=st.from_regex(r"[A-Za-z0-9\-_.:/+=@%,#]+", fullmatch=True))
def test_a_plain_token_is_written_as_it_is(token):
    """A token of letters, digits and -_.:/+=@%,# is written as it is:
    docker and podman run --env-file, which take a value as written,
    read it too."""
    assert env_value(token) == token


def test_a_token_a_shell_would_read_is_quoted_and_the_user_told():
    """A token with a space, $ or a quote is written in double quotes, in
    both keys, and a note says which readers take the quotes away and
    that docker and podman --env-file do not."""
    setup = Setup("http://127.0.0.1:8111/v1", auth=Auth(True, "AUTH_TOKEN", "", 'a b$c"d'))
    merged = open_webui(None, setup)
    assert 'OPENAI_API_KEY="a b\\$c\\"d"\n' in merged.text
    assert 'RAG_OPENAI_API_KEY="a b\\$c\\"d"\n' in merged.text
    [note] = [note for note in merged.notes if "double quotes" in note]
    assert "EnvironmentFile=" in note and "docker and podman run --env-file" in note
    plain = open_webui(None, Setup("http://127.0.0.1:8111/v1",
                                   auth=Auth(True, "AUTH_TOKEN", "", "tok-3#x")))
    assert "OPENAI_API_KEY=tok-3#x\n" in plain.text
    assert not any("double quotes" in note for note in plain.notes)
