"""Supervised fine-tuning and prediction: labelled audio in the forms people have, classifiers
on any encoder trained by the one engine, classifier releases, and labelling new files.

Layer: above evaluation (whose task-folder reader and metrics it uses), below the recipes and
the CLI.
"""
