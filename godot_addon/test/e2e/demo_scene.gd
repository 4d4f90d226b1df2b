extends "scenario.gd"
## The demo scene (res://demo/demo.tscn) in a running game: a line typed and submitted is
## answered and shown (subtitles, metrics), and "Hold to talk" opens and closes voice input.


#region Public Functions
func run() -> void:
	var scene: PackedScene = load("res://demo/demo.tscn")
	var demo: Node = scene.instantiate()
	add_child(demo)
	await get_tree().process_frame
	var line: LineEdit = find_all(demo, "LineEdit")[0]
	line.text = "Hello there!"
	line.text_submitted.emit(line.text)
	var finished: Dictionary = await wait_for_event("speech_finished")
	await get_tree().process_frame
	var texts: PackedStringArray = []
	for label: Label in find_all(demo, "Label"):
		texts.append(label.text)
	var log_view: RichTextLabel = find_all(demo, "RichTextLabel")[0]
	report(
		"demo", {"outcome": finished["outcome"], "labels": texts, "log": log_view.get_parsed_text()}
	)
	for button: Button in find_all(demo, "Button"):
		if button.text == "Hold to talk":
			button.button_down.emit()
			await get_tree().process_frame
			report("talk", {"listening": NpcVoice.is_listening()})
			button.button_up.emit()
	report("released", {"listening": NpcVoice.is_listening()})
#endregion
