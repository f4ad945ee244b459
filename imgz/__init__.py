"""imgz: a self-hosted image and video host that speaks Chevereto's API V1.

The package itself loads nothing, so that media worker processes (which load ``imgz.render``)
carry no web framework or database library; the application is built by ``imgz.web``.
"""
