"""The ``axlstm`` command line."""
