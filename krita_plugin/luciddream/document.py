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
from typing import Any, Dict, Optional

from . import pixels as px
from .engine import JobSpec
from .kit import Rect, UserError, check_mask, plan_region


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

    def job(self, targets: str, settings: Dict[str, Any]) -> JobSpec:
        return JobSpec(self.pixels, self.rect.width, self.rect.height, self.fmt.channels, self.fmt.sample,
                       self.mask, targets, dict(settings))


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
    rect = plan_region(canvas.width, canvas.height, 0, 0, bounds, context, "the image").region
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
    return Snapshot(doc, node_id, visible, fmt, str(profile or ""), canvas, rect, data, mask)


def _source_node(snap: Snapshot) -> Any:
    if snap.node_id is None:
        return None
    node = find_node(snap.doc, snap.node_id)
    if node is None:
        raise UserError("The layer was deleted while dreaming, so the dream was not added.")
    return node


def find_node(doc: Any, unique_id: Any) -> Any:
    """The layer with this uniqueId, or None. (Krita 5.1's Document.nodeByUniqueID returns a bare QObject that
    addChildNode refuses, so the tree is walked instead.)"""
    pending = list(doc.topLevelNodes())
    while pending:
        node = pending.pop()
        if node.uniqueId() == unique_id:
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


def write_result(snap: Snapshot, result: bytes, name: str) -> Any:
    """Add the dream as a new paint layer above the source and return it; the source is never written.

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
    parent = node.parentNode() if node is not None else doc.rootNode()
    above = node if node is not None else _top_layer(doc)
    if not parent.addChildNode(layer, above):
        raise UserError("Krita refused to add the new layer, so the dream was not added.")
    doc.refreshProjection()
    try:
        doc.setActiveNode(layer)
    except Exception:  # no view (batch use): the layer is there all the same
        pass
    return layer


def _top_layer(doc: Any) -> Any:
    """The topmost layer of the image (masks at the top level, such as the global selection mask, do not count)."""
    layers = [n for n in doc.topLevelNodes() if not str(n.type()).endswith("mask")]
    return layers[-1] if layers else None
