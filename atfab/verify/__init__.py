"""Operation: on-device verification of a provisioned unit (:mod:`atfab.verify.unit`).
"""
