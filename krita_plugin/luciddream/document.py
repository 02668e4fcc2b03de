"""Read what to dream from a Krita document, and put the dream into a new layer.

Only Krita's scripting API is used (Document, Node, Selection), through plain method calls, so tests can hand in
small fakes. The rules that matter to the user live here:
- the source (active paint layer or the visible image) is read once, before the engine starts, and never written;
- the result goes to a NEW paint layer above the source, built completely before it is inserted, so the document
  never holds a half-written layer and one undo removes it;
- if the document changed in a way that makes the result wrong (layer deleted, image resized, colour space
  converted), nothing is written and the status line says why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from . import pixels as px
from .engine import JobSpec
from .kit import RECORD_KEY, Rect, Record, UserError, check_mask, parse_record, plan_region


_NODE_KINDS = {
    "grouplayer": "group layer", "vectorlayer": "vector layer", "filelayer": "file layer",
    "filllayer": "fill layer", "clonelayer": "clone layer", "filterlayer": "filter layer",
    "transparencymask": "transparency mask", "filtermask": "filter mask", "transformmask": "transform mask",
    "selectionmask": "selection mask", "colorizemask": "colorize mask",
}


@dataclass(frozen=True)
class Snapshot:
    """What was sent to the engine, and what is needed to put the result back where it belongs."""

    doc: Any
    node_id: Any                   # the source layer's uniqueId (None when dreaming the visible image)
    visible: bool                  # True: the composite image was read
    fmt: px.PixelFormat
    profile: str
    canvas: Rect
    rect: Rect                     # the area read (selection bounds + context, clipped to the canvas)
    pixels: bytes                  # in the engine's layout
    mask: Optional[bytes]          # 0–255 per pixel of rect, None = everything
    selected: Optional[Rect] = None   # the selection's own bounds on the canvas (rect less the context), None = all

    @property
    def dreamed(self) -> Rect:
        """The area the user asked to dream: the selection's bounds, or the whole canvas (what messages name)."""
        return self.selected if self.selected is not None else self.rect

    def job(self, targets: str, settings: Dict[str, Any], guide: Optional[tuple] = None) -> JobSpec:
        return JobSpec(self.pixels, self.rect.width, self.rect.height, self.fmt.channels, self.fmt.sample,
                       self.mask, targets, dict(settings), guide)

    def preview_job(self, targets: str, settings: Dict[str, Any], width: int, height: int,
                    guide: Optional[tuple] = None) -> JobSpec:
        """The same region shrunk to width×height (the quick preview's working size)."""
        r = self.rect
        pixels = px.shrink(self.pixels, r.width, r.height, self.fmt.wire_bytes, width, height)
        mask = None if self.mask is None else px.shrink(self.mask, r.width, r.height, 1, width, height)
        return JobSpec(pixels, width, height, self.fmt.channels, self.fmt.sample, mask, targets, dict(settings),
                       guide)


def read_snapshot(doc: Any, node: Any, visible: bool, context: int) -> Snapshot:
    """The pixels and soft mask to dream: the selection's bounds plus `context` (the engine's offer), or the whole
    canvas."""
    if doc is None:
        raise UserError("Open an image first.")
    canvas = Rect(0, 0, int(doc.width()), int(doc.height()))
    if visible:
        model, depth, profile = doc.colorModel(), doc.colorDepth(), doc.colorProfile()
    else:
        if node is None:
            raise UserError("Choose the layer to dream in the Layers docker (or dream the visible image).")
        kind = node.type()
        if kind != "paintlayer":
            name = _NODE_KINDS.get(kind, kind or "layer of an unknown kind")
            raise UserError(f'The active layer "{node.name()}" is a {name}: choose a paint layer, or switch '
                                f'the source to "Visible image".')
        model, depth, profile = node.colorModel(), node.colorDepth(), node.colorProfile()
    fmt = px.pixel_format(model, depth)
    selection = doc.selection()
    bounds = None
    if selection is not None:
        bounds = Rect(int(selection.x()), int(selection.y()), int(selection.width()), int(selection.height()))
    plan = plan_region(canvas.width, canvas.height, 0, 0, bounds, context, "the image")
    rect = plan.region
    mask = None
    if selection is not None:
        mask = bytes(selection.pixelData(rect.x, rect.y, rect.width, rect.height))
        check_mask(mask, rect, "the image")
    if visible:
        doc.waitForDone()   # the projection must include the latest strokes
        raw = bytes(doc.pixelData(rect.x, rect.y, rect.width, rect.height))
    else:
        raw = bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height))
    data = px.to_engine(raw, fmt, rect.area)
    node_id = None if visible else node.uniqueId()
    return Snapshot(doc, node_id, visible, fmt, str(profile or ""), canvas, rect, data, mask, plan.selected)


def _source_node(snap: Snapshot) -> Any:
    if snap.node_id is None:
        return None
    node = find_node(snap.doc, snap.node_id)
    if node is None:
        raise UserError("The layer was deleted while dreaming, so the dream was not added.")
    return node


def find_node(doc: Any, unique_id: Any) -> Any:
    """The layer with this uniqueId (or its text), or None. (Krita 5.1's Document.nodeByUniqueID returns a bare
    QObject that addChildNode refuses, so the tree is walked instead.)"""
    text = unique_id if isinstance(unique_id, str) else None   # a record's or the guide list's text form
    pending = list(doc.topLevelNodes())
    while pending:
        node = pending.pop()
        if (uid_text(node) == text) if text is not None else (node.uniqueId() == unique_id):
            return node
        pending.extend(node.childNodes())
    return None


def check_unchanged(snap: Snapshot) -> Any:
    """The source layer, after checking that the document still fits the result (else a UserError)."""
    if (int(snap.doc.width()), int(snap.doc.height())) != (snap.canvas.width, snap.canvas.height):
        raise UserError("The image was resized while dreaming, so the dream was not added.")
    node = _source_node(snap)
    owner = snap.doc if node is None else node
    if (owner.colorModel(), owner.colorDepth()) != (snap.fmt.model, snap.fmt.depth):
        raise UserError("The colour space changed while dreaming, so the dream was not added.")
    return node


def write_result(snap: Snapshot, result: bytes, name: str, into: Any = None) -> Any:
    """Add the dream as a new paint layer above the source (or at the top of the group `into`) and return it; the
    source is never written.

    Pixels outside the selection are left transparent in the new layer (the engine returns them unchanged, so
    the picture looks the same, and the layer holds only the dream).
    """
    node = check_unchanged(snap)
    data = px.from_engine(result, snap.fmt, snap.rect.area)
    data = px.clear_unselected(data, snap.mask, snap.fmt.pixel_bytes)
    doc = snap.doc
    layer = doc.createNode(name, "paintlayer")
    if layer is None:
        raise UserError("Krita could not create a new layer, so the dream was not added.")
    same = (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) == (snap.fmt.model, snap.fmt.depth,
                                                                             snap.profile)
    if not same and not layer.setColorSpace(snap.fmt.model, snap.fmt.depth, snap.profile):
        raise UserError(f"Krita could not give the new layer the source's colour space ({snap.fmt.model} "
                            f"{snap.fmt.depth}), so the dream was not added.")
    r = snap.rect
    layer.setPixelData(data, r.x, r.y, r.width, r.height)  # before insertion: no one ever sees it half done
    if into is not None:
        children = list(into.childNodes())
        parent, above = into, (children[-1] if children else None)
    else:
        parent = node.parentNode() if node is not None else doc.rootNode()
        above = node if node is not None else _top_layer(doc)
    if not parent.addChildNode(layer, above):
        raise UserError("Krita refused to add the new layer, so the dream was not added.")
    doc.refreshProjection()
    # No setActiveNode here: Krita makes a layer added to the image the active one once this handler returns,
    # and Krita 5.2.9 asserts ("shape", kis_node_manager.cpp) on a layer activated in the handler that added it.
    return layer


def _top_layer(doc: Any) -> Any:
    """The topmost layer of the image (masks at the top level, such as the global selection mask, do not count)."""
    layers = [n for n in doc.topLevelNodes() if not str(n.type()).endswith("mask")]
    return layers[-1] if layers else None


def add_group(snap: Snapshot, name: str) -> Any:
    """An empty group layer above the source (the variations' home), after the same checks as write_result."""
    node = check_unchanged(snap)
    doc = snap.doc
    group = doc.createGroupLayer(name)
    if group is None:
        raise UserError("Krita could not create a group layer, so the variations were not added.")
    parent = node.parentNode() if node is not None else doc.rootNode()
    above = node if node is not None else _top_layer(doc)
    if not parent.addChildNode(group, above):
        raise UserError("Krita refused to add the group layer, so the variations were not added.")
    return group


def uid_text(node: Any) -> str:
    """A layer's uniqueId as text ("{8-4-4-4-12}"): the key of its record, stable through saving a .kra."""
    uid = node.uniqueId()
    return str(uid.toString()) if hasattr(uid, "toString") else str(uid)


def record_key(node: Any) -> str:
    """The document annotation that holds this layer's settings record (kit.RECORD_KEY/uuid)."""
    return f"{RECORD_KEY}/{uid_text(node)}"


def write_record(doc: Any, node: Any, text: str) -> None:
    """Keep the record with the document: a .kra saves its annotations, so it survives closing and reopening.
    Annotations are not layer data, so this adds no undo step."""
    doc.setAnnotation(record_key(node), f"Lucid Dream settings of the layer {node.name()}", text.encode("utf-8"))


def read_record(doc: Any, node: Any) -> Record:
    """The record of a result layer, or a UserError sentence (no layer chosen, not a Lucid Dream layer, damaged)."""
    if doc is None:
        raise UserError("Open an image first.")
    if node is None:
        raise UserError("Select a layer that Lucid Dream made (its name starts with \"Dream:\") in the Layers "
                        "docker.")
    key = record_key(node)
    data = doc.annotation(key) if key in list(doc.annotationTypes()) else b""
    return parse_record(bytes(data), f'the layer "{node.name()}"')


@dataclass(frozen=True)
class GuidePixels:
    """A guide picture as the engine receives it (its own layout: any size, RGBA/gray, u8/u16/f32)."""

    pixels: bytes
    width: int
    height: int
    channels: int
    sample: str

    def wire(self) -> tuple:
        return (self.pixels, self.width, self.height, self.channels, self.sample)


GUIDE_SIDE = 448   # the engine looks at a guide at most this large (objectives.GUIDE_SIDE): send no more


def read_guide(doc: Any, unique_id: Any) -> GuidePixels:
    """The guide layer's pixels (its bounds, shrunk to GUIDE_SIDE), or a sentence when it is gone, empty or in a
    colour model the engine cannot read."""
    node = find_node(doc, unique_id)
    if node is None:
        raise UserError("The guide layer is no longer in this image: choose another guide (or none).")
    if str(node.type()).endswith("mask"):
        raise UserError(f'The guide "{node.name()}" is a mask, not a layer: choose a layer as the guide.')
    try:
        fmt = px.pixel_format(node.colorModel(), node.colorDepth())
    except UserError:
        raise UserError(f'The guide layer "{node.name()}" is in the {node.colorModel()} colour model, which the '
                        f'engine cannot read: convert it (Layer › Convert Layer Color Space…) to RGB or '
                        f'grayscale, or choose another guide.') from None
    box = node.bounds()
    x, y, w, h = int(box.x()), int(box.y()), int(box.width()), int(box.height())
    if w <= 0 or h <= 0:
        raise UserError(f'The guide layer "{node.name()}" is empty: paint on it or choose another guide.')
    raw = px.to_engine(bytes(node.pixelData(x, y, w, h)), fmt, w * h)
    scale = min(1.0, GUIDE_SIDE / max(w, h))
    if scale < 1.0:
        nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
        raw, w, h = px.shrink(raw, w, h, fmt.wire_bytes, nw, nh), nw, nh
    return GuidePixels(raw, w, h, fmt.channels, fmt.sample)


def guide_layers(doc: Any) -> List[Tuple[str, str]]:
    """(uniqueId text, name) of every layer that can be a guide, top first, groups' children included."""
    found: List[Tuple[str, str]] = []

    def walk(nodes: List[Any], depth: int) -> None:
        for node in reversed(nodes):
            if str(node.type()).endswith("mask"):
                continue
            found.append((uid_text(node), "  " * depth + str(node.name())))
            walk(list(node.childNodes()), depth + 1)
    if doc is not None:
        walk(list(doc.topLevelNodes()), 0)
    return found
