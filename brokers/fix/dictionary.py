"""A relaxed copy of a QuickFIX data dictionary: the message structure without value rules (no quickfix import).

QuickFIX refuses an incoming message at the session level (35=3) and never hands it to the application when a
value is not among the dictionary's enumerations (``IncorrectTagValue``), has the wrong format
(``IncorrectDataFormat``) or a required field is missing; no session setting turns the value check off. Real
counterparties send values of older FIX versions (ExecType 150=2 "fill" on a 4.4 session) and leave optional
things out, and a refused ExecutionReport is a fill lost. So the adapter validates against a copy of the
dictionary in which, for application messages:

* fields outside the header and trailer have no enumerations and are typed STRING (group counters, lengths
  and data fields keep their types: the parser reads repeating groups and binary data with them);
* no field, group or component is required.

What is left is the structure (tags, repeating groups), so messages still parse into their groups, and the
adapter reads and judges the values itself (``execution.py``), recording what it cannot interpret. The header,
the trailer and the admin messages stay strict: they are QuickFIX's own business.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["relax_dictionary"]

#: Types the parser itself depends on.
_KEEP_TYPES = frozenset({"NUMINGROUP", "LENGTH", "DATA", "XMLDATA"})


def _names_in(element: ET.Element, components: dict[str, ET.Element], seen: set[str]) -> set[str]:
    names: set[str] = set()
    for child in element:
        name = child.get("name")
        if name is None:
            continue
        if child.tag == "field":
            names.add(name)
        elif child.tag == "group":
            names.add(name)
            names |= _names_in(child, components, seen)
        elif child.tag == "component" and name not in seen:
            seen.add(name)
            definition = components.get(name)
            if definition is not None:
                names |= _names_in(definition, components, seen)
    return names


def _not_required(element: ET.Element) -> None:
    for child in element.iter():
        if child is not element and child.tag in ("field", "group", "component") and child.get("required"):
            child.set("required", "N")


def relax_dictionary(source: Path, target: Path) -> Path:
    """Write the relaxed copy of the dictionary ``source`` to ``target`` (see the module docstring)."""
    tree = ET.parse(source)
    root = tree.getroot()
    components = {c.get("name", ""): c for c in root.iterfind("components/component")}
    strict: set[str] = set()
    for part in ("header", "trailer"):
        element = root.find(part)
        if element is not None:
            strict |= _names_in(element, components, set())
    # Group counters keep their type (FIX 4.2 types them INT, later versions NUMINGROUP).
    counters = {g.get("name") for g in root.iter("group")}
    for field in root.iterfind("fields/field"):
        if field.get("name") in strict:
            continue
        if field.get("name") in counters:
            for value in list(field):
                field.remove(value)
            continue
        for value in list(field):
            field.remove(value)
        if field.get("type", "").upper() not in _KEEP_TYPES:
            field.set("type", "STRING")
    for message in root.iterfind("messages/message"):
        if message.get("msgcat") == "app":
            _not_required(message)
    for component in components.values():
        _not_required(component)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(target)
    return target
