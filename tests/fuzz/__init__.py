"""Fuzz suite: malformed, odd and hostile inputs through every entry point (issue 11, item 3).

Every case is generated in code into ``tmp_path`` (no network, no big files); ``cases`` holds
the generators and the shared assertions, one test module per entry-point group.
"""
