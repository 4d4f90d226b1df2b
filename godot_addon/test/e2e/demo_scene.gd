extends "scenario.gd"
## The demo scene (res://demo/demo.tscn) in a running game: a line typed key by key goes to the
## daemon while it is typed ([code]typing[/code], after a pause), Enter says it, and it is
## answered and shown (subtitles, metrics; the face's mouth moves and its words follow the
## voice: the most open the mouth was is recorded every frame); "Hold to talk" opens and closes
## voice input; "Start scene" starts the blacksmith and the innkeeper's scene, a line typed to
## the blacksmith joins it (answered next), and "End scene" ends it.

#region Private Variables
var _typed: Array[String] = []
var _mouth: NpcVoiceMouth = null
var _most_open: float = 0.0
#endregion


#region Engine Callbacks
func _process(_delta: float) -> void:
	if _mouth != null:
		_most_open = maxf(_most_open, _mouth.get_open_amount())


#endregion


#region Public Functions
func run() -> void:
	var scene: PackedScene = load("res://demo/demo.tscn")
	var demo: Node = scene.instantiate()
	add_child(demo)
	await get_tree().process_frame
	var face: Node = demo.find_child("Face", true, false)
	_mouth = face.get(&"mouth")
	NpcVoice._typing.typing_sent.connect(_on_typing_sent)  # white box: what went out
	var line: LineEdit = find_all(demo, "LineEdit")[0]
	line.grab_focus()
	await type_keys("Hello ")
	await wait_until(func() -> bool: return not _typed.is_empty(), "typing sent")
	await type_keys("there!")
	# A sentence goes out at once; the daemon starts its reply, then Enter says it.
	var sent_whole: Callable = func() -> bool: return _typed[-1].ends_with(": Hello there!")
	await wait_until(sent_whole, "the sentence sent")
	await type_keys("", false, true)
	var finished: Dictionary = await wait_for_event("speech_finished")
	report("typing", {"sent": _typed})
	var words: Label = face.get(&"words")
	report("face", {"most_open": _most_open, "words": words.text, "open": _mouth.get_open_amount()})
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
	await _scene(demo, line)


#endregion


#region Private Functions
func _scene(demo: Node, line: LineEdit) -> void:
	var scene_button: Button = null
	for button: Button in find_all(demo, "Button"):
		if button.text == "Start scene":
			scene_button = button
	scene_button.pressed.emit()
	await wait_for_event("scene_line_started")
	var picker: OptionButton = find_all(demo, "OptionButton")[0]
	for index: int in picker.item_count:
		if picker.get_item_metadata(index) == "blacksmith":
			picker.select(index)
			picker.item_selected.emit(index)
	line.release_focus()  # Enter ended its editing (Godot 4.4+): focusing it again resumes it
	line.grab_focus()
	await type_keys("Brom, is that fair?", false, true)
	var answered: Callable = func() -> bool:
		return events_of("scene_line_started").any(
			func(e: Dictionary) -> bool: return e["answers_player"]
		)
	await wait_until(answered, "the answer to the player")
	var answer: Array[Dictionary] = events_of("scene_line_started").filter(
		func(e: Dictionary) -> bool: return e["answers_player"]
	)
	await wait_for_event("speech_started", answer[0]["turn_id"])
	report("scene_button", {"text": scene_button.text})
	scene_button.pressed.emit()
	await wait_for_event("scene_ended")
	await get_tree().process_frame
	var log_view: RichTextLabel = find_all(demo, "RichTextLabel")[0]
	report("demo_scene", {"button": scene_button.text, "log": log_view.get_parsed_text()})


#endregion


#region Signal Handlers
func _on_typing_sent(npc_id: String, text: String) -> void:
	_typed.append("%s: %s" % [npc_id, text])
#endregion
