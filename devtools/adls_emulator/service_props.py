"""Blob service properties (``GET``/``PUT /?restype=service&comp=properties``), as the REST docs
("Set Blob Service Properties") describe them: the document is checked, each top-level element a
request carries replaces the stored one and the others are kept. They are stored (with
``--data-dir``, across restarts) and returned; only ``DeleteRetentionPolicy`` changes how the
emulator behaves (soft delete): no logs or metrics are written, CORS preflight and static websites
are not served.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .errors import StorageError, error

ORDER = ["Logging", "HourMetrics", "MinuteMetrics", "Cors", "DefaultServiceVersion", "DeleteRetentionPolicy",
         "StaticWebsite"]

DEFAULTS = {
    "Logging": "<Logging><Version>1.0</Version><Read>false</Read><Write>false</Write><Delete>false</Delete>"
               "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging>",
    "HourMetrics": "<HourMetrics><Version>1.0</Version><Enabled>true</Enabled><IncludeAPIs>true</IncludeAPIs>"
                   "<RetentionPolicy><Enabled>true</Enabled><Days>7</Days></RetentionPolicy></HourMetrics>",
    "MinuteMetrics": "<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled>"
                     "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></MinuteMetrics>",
    "Cors": "<Cors />",
    "DeleteRetentionPolicy": "<DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy>",
    "StaticWebsite": "<StaticWebsite><Enabled>false</Enabled></StaticWebsite>",
}


def _bad(message: str, code: str = "InvalidXmlDocument") -> StorageError:
    return error(400, code, message)


def _child(elem: ET.Element, name: str, required: bool = True) -> ET.Element | None:
    found = elem.find(name)
    if found is None and required:
        raise _bad(f"{elem.tag} needs {name}.")
    return found


def _bool(elem: ET.Element, name: str, required: bool = True) -> bool | None:
    node = _child(elem, name, required)
    if node is None:
        return None
    text = (node.text or "").strip().lower()
    if text not in ("true", "false"):
        raise _bad(f"{elem.tag}/{name} must be true or false.", "InvalidXmlNodeValue")
    return text == "true"


def _retention(elem: ET.Element, name: str = "RetentionPolicy") -> None:
    policy = _child(elem, name) if name != elem.tag else elem
    if _bool(policy, "Enabled"):
        days = _child(policy, "Days")
        try:
            value = int((days.text or "").strip())
        except ValueError as exc:
            raise _bad(f"{policy.tag}/Days must be a number.", "InvalidXmlNodeValue") from exc
        if not 1 <= value <= 365:
            raise _bad(f"{policy.tag}/Days must be between 1 and 365.", "InvalidXmlNodeValue")


def _check(elem: ET.Element) -> None:
    tag = elem.tag
    if tag == "Logging":
        _child(elem, "Version")
        for name in ("Delete", "Read", "Write"):
            _bool(elem, name)
        _retention(elem)
    elif tag in ("HourMetrics", "MinuteMetrics"):
        _child(elem, "Version")
        if _bool(elem, "Enabled"):
            _bool(elem, "IncludeAPIs")
        _retention(elem)
    elif tag == "Cors":
        rules = list(elem)
        if len(rules) > 5:
            raise _bad("At most five CORS rules.", "InvalidXmlNodeValue")
        for rule in rules:
            if rule.tag != "CorsRule":
                raise _bad(f"Unexpected element {rule.tag} in Cors.")
            for name in ("AllowedOrigins", "AllowedMethods", "MaxAgeInSeconds", "ExposedHeaders", "AllowedHeaders"):
                _child(rule, name)
            methods = {m.strip().upper() for m in (rule.findtext("AllowedMethods") or "").split(",") if m.strip()}
            if not methods or methods - {"DELETE", "GET", "HEAD", "MERGE", "POST", "OPTIONS", "PUT", "PATCH"}:
                raise _bad("CorsRule/AllowedMethods has an unknown method.", "InvalidXmlNodeValue")
    elif tag == "DefaultServiceVersion":
        if not (elem.text or "").strip():
            raise _bad("DefaultServiceVersion is empty.", "InvalidXmlNodeValue")
    elif tag == "DeleteRetentionPolicy":
        _retention(elem, tag)
    elif tag == "StaticWebsite":
        _bool(elem, "Enabled")
    else:
        raise _bad(f"Unexpected element {tag} in StorageServiceProperties.")


class ServiceProperties:
    def __init__(self) -> None:
        self.elements: dict[str, str] = dict(DEFAULTS)

    def set(self, body: bytes) -> None:
        try:
            root = ET.fromstring(body.decode("utf-8-sig"))
        except (ET.ParseError, UnicodeDecodeError) as exc:
            raise _bad("The XML is not well formed.") from exc
        if root.tag != "StorageServiceProperties":
            raise _bad("The document must be StorageServiceProperties.")
        new = {}
        for elem in root:
            _check(elem)
            new[elem.tag] = ET.tostring(elem, encoding="unicode")
        if not new:
            raise _bad("StorageServiceProperties is empty.")
        self.elements.update(new)

    def xml(self) -> bytes:
        body = "".join(self.elements[name] for name in ORDER if name in self.elements)
        return ('<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties>' + body
                + "</StorageServiceProperties>").encode()


    def delete_retention_days(self) -> int | None:
        """Days deleted paths are kept (soft delete), or None when DeleteRetentionPolicy is off."""
        policy = ET.fromstring(self.elements["DeleteRetentionPolicy"])
        if (policy.findtext("Enabled") or "").strip().lower() != "true":
            return None
        return int((policy.findtext("Days") or "0").strip() or 0) or None
