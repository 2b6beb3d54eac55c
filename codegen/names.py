"""Names from a model are data: these turn them into safe C identifiers and comment text."""
import re

_MAX_COMMENT = 80


def c_identifier(name: str, fallback: str = "x", max_len: int = 40) -> str:
    """Sanitise to [A-Za-z0-9_], not starting with a digit; deterministic and lossy."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name)[:max_len].strip("_") or fallback
    return "_" + ident if ident[0].isdigit() else ident


def c_comment(name: str) -> str:
    """Printable ASCII that cannot close a comment, open one, or form a trigraph."""
    text = name.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(ch if " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in text)
    if len(text) > _MAX_COMMENT:
        text = text[:_MAX_COMMENT] + "..."
    return text.replace("*/", "* /").replace("/*", "/ *").replace("??", "?\\?")


def c_string(text: str) -> str:
    """A C string literal holding the UTF-8 bytes of `text`, printable ASCII only."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?' or not " " <= ch <= "~":
            out.append(f"\\{byte:03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
