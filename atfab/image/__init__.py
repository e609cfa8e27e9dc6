"""Images layer: partition tables, module profiles, factory_param, NVS, mfg_nvs, GATT tables, app
images, the `atfab build` folder, flash sets, inspecting and locating factory data in images.

Imports only :mod:`atfab.core`.
"""
