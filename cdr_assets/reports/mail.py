"""The report email (pure: no Dagster): building it and sending it over SMTP.

Header values are checked before they reach a header: a recipient or subject carrying a line
break (``"a@b\\r\\nBcc: c@d"``) is refused, not folded into another header. Images that a report's
HTML embeds as ``data:`` URIs (right for a standalone file) travel in the mail as inline parts
referenced by ``cid:`` (most mail clients block ``data:`` images).
"""

from __future__ import annotations

import base64
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

_FORBIDDEN = ("\r", "\n", "\x00")
_DATA_IMAGE = re.compile(r'src="data:image/(png|jpeg|gif);base64,([A-Za-z0-9+/=]+)"')


class MailError(RuntimeError):
    """The mail could not be built or was not accepted for every recipient."""


class PartialDelivery(MailError):
    """The server accepted the mail for some recipients and refused others: sending it again
    would mail the accepted ones twice, so this is not worth a retry."""

    def __init__(self, accepted: list[str], refused: dict[str, tuple[int, bytes]]):
        self.accepted, self.refused = accepted, refused
        reasons = "; ".join(
            f"{rcpt}: {code} {text.decode(errors='replace')}" for rcpt, (code, text) in refused.items()
        )
        super().__init__(f"the SMTP server refused {reasons}; accepted for {', '.join(accepted)}")


def check_header(value: str, what: str) -> str:
    if any(c in value for c in _FORBIDDEN):
        raise MailError(f"{what} contains a line break or NUL; refusing it: {value!r}")
    return value.strip()


def parse_recipients(text: str) -> list[str]:
    """``"a@x.org, b@y.org"`` -> addresses; anything that is not one plain address is an error."""
    check_header(text, "recipient list")
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        _, addr = parseaddr(part)
        if not addr or addr != part.strip("<>") or "@" not in addr or any(c in addr for c in ' ,;:"<>'):
            raise MailError(f"not an email address: {part!r}")
        out.append(addr)
    return out


def _address(text: str) -> Address:
    local, _, domain = check_header(text, "address").rpartition("@")
    if not local or not domain:
        raise MailError(f"not an email address: {text!r}")
    return Address(addr_spec=f"{local}@{domain}")


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes
    maintype: str
    subtype: str


def build_email(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    text: str,
    html: str,
    attachments: list[Attachment],
) -> EmailMessage:
    if not recipients:
        raise MailError("no recipients")
    msg = EmailMessage()
    msg["From"] = _address(sender)
    msg["To"] = [_address(r) for r in recipients]
    msg["Subject"] = check_header(subject, "subject")
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="cdr-assets")
    msg.set_content(text)
    html, images = inline_images(html)
    msg.add_alternative(html, subtype="html")
    html_part = msg.get_payload()[1]
    for data, subtype, cid in images:
        html_part.add_related(data, maintype="image", subtype=subtype, cid=cid)
    for a in attachments:
        name = check_header(a.filename, "file name")
        msg.add_attachment(a.data, maintype=a.maintype, subtype=a.subtype, filename=name)
    return msg


def inline_images(html: str) -> tuple[str, list[tuple[bytes, str, str]]]:
    """``html`` with each ``data:`` image replaced by a ``cid:`` reference, and those images
    (bytes, image subtype, Content-ID with its angle brackets)."""
    images: list[tuple[bytes, str, str]] = []

    def to_cid(m: re.Match[str]) -> str:
        cid = make_msgid(domain="cdr-assets")
        images.append((base64.b64decode(m[2]), m[1], cid))
        return f'src="cid:{cid[1:-1]}"'

    return _DATA_IMAGE.sub(to_cid, html), images


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str = ""
    password: str = ""
    starttls: bool = True
    timeout: float = 30.0


def send_email(msg: EmailMessage, smtp: SmtpSettings) -> None:
    """One SMTP transaction for all recipients; raises MailError unless every one is accepted."""
    if not smtp.host:
        raise MailError("SMTP_HOST is not set; cannot send the report (or unset CDR_REPORT_EMAIL)")
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                client.login(smtp.user, smtp.password)
            refused = client.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"sending the report to {smtp.host}:{smtp.port} failed: {exc!r}") from exc
    if refused:
        # Accepted for some: say so loudly rather than count it as delivered.
        accepted = [a.addr_spec for a in msg["To"].addresses if a.addr_spec not in refused]
        raise PartialDelivery(accepted, refused)
