"""The plugin's widgets: the dock panel, the settings dialog and the result inspector tool."""
