namespace quire_ui_placeholder {}
