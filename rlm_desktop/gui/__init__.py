"""The Qt layer: thin adapters and widgets over the Qt-free core (nothing below imports this package)."""
