"""{{ cookiecutter.project_slug }}: model, losses, layers, ops, data and training helpers."""

__version__ = "{{ cookiecutter.version }}"
