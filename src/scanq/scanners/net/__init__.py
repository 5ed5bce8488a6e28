"""The network scanners and their library: targets and the SSRF rules, pinned connections, DNS, certificates,
HTTP on the wire, findings, and the plugins ``tls``, ``ports``, ``http``, ``dns`` and ``surface``.

They are plugins like any third-party one: registered through the ``scanq.scanners``
entry points, built from the plugin API (``scanners.base``, ``scanners.settings``),
and sharing one settings section (``settings.NetSettings``).
"""
