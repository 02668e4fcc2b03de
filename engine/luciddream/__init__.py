"""luciddream: DeepDream inside a selection, with class and layer targets, octaves and seamless tiles.

    import luciddream
    out = luciddream.dream(image, mask, targets="goldfish, peacock=0.5", seed=1)
"""
from .dream import Settings, dream
from .errors import Cancelled, DreamError
from .labels import class_names, find_class, search_classes
from .models import DEFAULT_MODEL, SPECS, load_model
from .objectives import Target, parse_targets

__all__ = ["dream", "Settings", "Cancelled", "DreamError", "Target", "parse_targets", "class_names", "find_class",
           "search_classes", "load_model", "SPECS", "DEFAULT_MODEL"]
__version__ = "0.1.0"
