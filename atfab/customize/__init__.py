"""One-off customisation of a board or a factory image (``atfab customize``).

:mod:`~atfab.customize.plan` turns options into a checked request and edits,
:mod:`~atfab.customize.nvs_edit` rebuilds an mfg_nvs with them, :mod:`~atfab.customize.image`
applies them to a factory image or bare mfg_nvs,
:mod:`~atfab.customize.legacy` to a legacy 0xFCFC factory_param block, and
:mod:`~atfab.customize.live` to a running module over AT.
"""

from .image import customize_file, customize_image
from .nvs_edit import customize_nvs, nvs_diff
from .plan import CustomizeRequest, make_request

__all__ = ["CustomizeRequest", "make_request", "customize_image", "customize_nvs", "customize_file", "nvs_diff"]
