extends Control
## Demo of the NPC Voice addon: pick an NPC, type a line (or hold "Hold to talk", or switch on
## "Open mic" and speak), hear the streamed reply, read the subtitles and the measured TTFA.
## What you type goes to the daemon while you type ([code]NpcVoice.attach_line_edit[/code]), so
## the reply starts sooner. "Start scene" (or F5) lets the blacksmith and the innkeeper argue;
## a line typed meanwhile to one of them goes into the scene, and that NPC answers you next.
## Start the daemon first ([code]npc-voice serve[/code]) or turn on
## [code]npc_voice/daemon/auto_launch[/code] in the project settings. Voice input needs
## [code]audio/driver/enable_input[/code] (on in this project) and a microphone.
##
## The UI is built in code; one [NpcVoicePlayer] per NPC shows the routing by
## [code]npc_id[/code] (use [NpcVoicePlayer3D] for positional voices in a 3D scene). A drawn face
## ([code]demo_face.gd[/code]) moves its mouth with the voice of the NPC speaking (lip sync: an
## [NpcVoiceMouth] on that NPC's player) and shows the words as they are spoken.

#region Constants
## The NPCs of the scene (the daemon's packaged config has both).
const SCENE_NPCS: Array[String] = ["blacksmith", "innkeeper"]
## What they talk about.
const SCENE_SITUATION: String = "The blacksmith and the innkeeper argue about the price of ale."
const DemoFace := preload("demo_face.gd")
#endregion

#region Private Variables
var _status: Label = Label.new()
var _npc_picker: OptionButton = OptionButton.new()
var _line: LineEdit = LineEdit.new()
var _say_button: Button = Button.new()
var _stop_button: Button = Button.new()
var _talk_button: Button = Button.new()
var _open_mic: CheckButton = CheckButton.new()
var _scene_button: Button = Button.new()
var _metrics: Label = Label.new()
var _face: DemoFace = DemoFace.new()
var _transcript: RichTextLabel = RichTextLabel.new()
var _players: Dictionary = {}
var _turn_id: int = -1
var _subtitled_turns: Dictionary = {}
var _scene_id: int = -1
#endregion


#region Engine Callbacks
func _ready() -> void:
	_build_ui()
	NpcVoice.connected.connect(_on_connected)
	NpcVoice.disconnected.connect(_on_disconnected)
	NpcVoice.subtitle_received.connect(_on_subtitle_received)
	NpcVoice.speech_started.connect(_on_speech_started)
	NpcVoice.speech_finished.connect(_on_speech_finished)
	NpcVoice.error_received.connect(_on_error_received)
	NpcVoice.player_speech_started.connect(_on_player_speech_started)
	NpcVoice.player_speech_ended.connect(_on_player_speech_ended)
	NpcVoice.transcript_received.connect(_on_transcript_received)
	NpcVoice.scene_line_started.connect(_on_scene_line_started)
	NpcVoice.scene_ended.connect(_on_scene_ended)
	if NpcVoice.is_connected_to_daemon():
		_on_connected(NpcVoice.get_welcome())
	else:
		_status.text = (
			"Connecting to %s:%d... (start the daemon: npc-voice serve)"
			% [NpcVoice.host, NpcVoice.port]
		)


#endregion


#region Private Functions
func _build_ui() -> void:
	set_anchors_and_offsets_preset(Control.PRESET_FULL_RECT)
	var margin := MarginContainer.new()
	margin.set_anchors_and_offsets_preset(Control.PRESET_FULL_RECT)
	for side: String in ["margin_left", "margin_right", "margin_top", "margin_bottom"]:
		margin.add_theme_constant_override(side, 16)
	add_child(margin)
	var column := VBoxContainer.new()
	margin.add_child(column)
	var title := Label.new()
	title.text = "NPC Voice demo"
	title.add_theme_font_size_override("font_size", 24)
	column.add_child(title)
	column.add_child(_status)
	var row := HBoxContainer.new()
	column.add_child(row)
	_npc_picker.custom_minimum_size = Vector2(240, 0)
	_npc_picker.item_selected.connect(_on_npc_selected)
	row.add_child(_npc_picker)
	_line.placeholder_text = "Say something to the NPC and press Enter"
	_line.size_flags_horizontal = Control.SIZE_EXPAND_FILL
	_line.text_submitted.connect(_on_line_submitted)
	row.add_child(_line)
	_say_button.text = "Say"
	_say_button.pressed.connect(_on_say_pressed)
	row.add_child(_say_button)
	_stop_button.text = "Stop"
	_stop_button.pressed.connect(_on_stop_pressed)
	row.add_child(_stop_button)
	var voice_row := HBoxContainer.new()
	column.add_child(voice_row)
	_talk_button.text = "Hold to talk"
	_talk_button.tooltip_text = "Push-to-talk: speak while holding the button down"
	_talk_button.button_down.connect(_on_talk_button_down)
	_talk_button.button_up.connect(_on_talk_button_up)
	voice_row.add_child(_talk_button)
	_open_mic.text = "Open mic"
	_open_mic.tooltip_text = "The daemon hears when you start and stop talking (use a headset)"
	_open_mic.toggled.connect(_on_open_mic_toggled)
	voice_row.add_child(_open_mic)
	_scene_button.text = "Start scene"
	_scene_button.tooltip_text = "The blacksmith and the innkeeper argue; type to join in (F5)"
	var key := InputEventKey.new()
	key.keycode = KEY_F5
	_scene_button.shortcut = Shortcut.new()
	_scene_button.shortcut.events = [key]
	_scene_button.pressed.connect(_on_scene_button_pressed)
	voice_row.add_child(_scene_button)
	_metrics.text = "TTFA: -"
	column.add_child(_metrics)
	_face.name = "Face"
	column.add_child(_face)
	_transcript.size_flags_vertical = Control.SIZE_EXPAND_FILL
	_transcript.scroll_following = true
	_transcript.bbcode_enabled = true
	column.add_child(_transcript)
	_set_controls_enabled(false)


func _set_controls_enabled(enabled: bool) -> void:
	_npc_picker.disabled = not enabled
	_line.editable = enabled
	_say_button.disabled = not enabled
	_stop_button.disabled = not enabled
	_talk_button.disabled = not enabled
	_open_mic.disabled = not enabled
	var npcs: Array[String] = []
	for npc: Dictionary in NpcVoice.get_npcs():
		npcs.append(str(npc.get("npc_id", "")))
	_scene_button.disabled = (
		not enabled or SCENE_NPCS.any(func(n: String) -> bool: return not n in npcs)
	)
	if not enabled:
		_open_mic.set_pressed_no_signal(false)


func _say() -> void:
	var text: String = _line.text.strip_edges()
	if text.is_empty() or _npc_picker.selected < 0:
		return
	var npc_id: String = _npc_picker.get_item_metadata(_npc_picker.selected)
	var options: Dictionary = {}
	if _scene_id >= 0 and npc_id in SCENE_NPCS:
		options["scene_id"] = _scene_id  # the player joins the scene: npc_id answers next
	_transcript.append_text("\n[b]You%s:[/b] " % (" (to %s)" % npc_id if options else ""))
	_transcript.add_text(text)
	_turn_id = NpcVoice.say(npc_id, text, options)
	_line.clear()
	_metrics.text = "Waiting for %s..." % npc_id


func _selected_npc() -> String:
	if _npc_picker.selected < 0:
		return ""
	return _npc_picker.get_item_metadata(_npc_picker.selected)


static func _ms(value: Variant) -> String:
	if value is float or value is int:
		return "%.0f ms" % value if value >= 0 else "-"
	return "-"


#endregion


#region Signal Handlers
func _on_connected(welcome: Dictionary) -> void:
	_status.text = "Connected to %s" % welcome.get("daemon", "the daemon")
	_npc_picker.clear()
	for npc: Dictionary in NpcVoice.get_npcs():
		var npc_id: String = npc.get("npc_id", "")
		_npc_picker.add_item("%s (%s)" % [npc.get("display_name", npc_id), npc.get("profile", "")])
		_npc_picker.set_item_metadata(_npc_picker.item_count - 1, npc_id)
		if not _players.has(npc_id):
			var player := NpcVoicePlayer.new()
			player.npc_id = npc_id
			player.name = "Voice_%s" % npc_id
			add_child(player)
			_players[npc_id] = player
	_set_controls_enabled(_npc_picker.item_count > 0)
	if _npc_picker.item_count > 0:
		NpcVoice.attach_line_edit(_line, _selected_npc())  # the daemon prepares while you type


func _on_disconnected(reason: String) -> void:
	_status.text = "Disconnected (%s); reconnecting..." % reason
	_set_controls_enabled(false)


func _on_line_submitted(_text: String) -> void:
	_say()


func _on_say_pressed() -> void:
	_say()


func _on_stop_pressed() -> void:
	if _turn_id >= 0:
		NpcVoice.cancel(_turn_id)


func _on_npc_selected(_index: int) -> void:
	NpcVoice.attach_line_edit(_line, _selected_npc())
	if _open_mic.button_pressed:  # the open microphone follows the NPC
		_on_open_mic_toggled(true)


func _on_talk_button_down() -> void:
	if _selected_npc() != "" and not _open_mic.button_pressed:
		NpcVoice.start_listening(_selected_npc(), "push_to_talk")


func _on_talk_button_up() -> void:
	if not _open_mic.button_pressed:
		NpcVoice.stop_listening()


func _on_open_mic_toggled(on: bool) -> void:
	if not on:
		NpcVoice.stop_listening()
	elif _selected_npc() == "" or not NpcVoice.start_listening(_selected_npc(), "open_mic"):
		_open_mic.set_pressed_no_signal(false)


func _on_scene_button_pressed() -> void:
	if _scene_id >= 0:
		NpcVoice.end_scene(_scene_id)
		return
	_scene_id = NpcVoice.start_scene(SCENE_NPCS, SCENE_SITUATION)
	_scene_button.text = "End scene"
	_transcript.append_text("\n[i]Scene: %s[/i]" % SCENE_SITUATION)


func _on_scene_line_started(
	_scene: int, _turn_id: int, npc_id: String, answers_player: bool
) -> void:
	_metrics.text = "Scene: %s %s" % [npc_id, "answers you" if answers_player else "speaks"]


func _on_scene_ended(scene_id: int, reason: String, lines: int) -> void:
	if scene_id == _scene_id:
		_scene_id = -1
		_scene_button.text = "Start scene"
	_transcript.append_text("\n[i]Scene over (%s, %d lines)[/i]" % [reason, lines])


func _on_player_speech_started(npc_id: String) -> void:
	_metrics.text = "%s is listening to you..." % npc_id


func _on_player_speech_ended(_npc_id: String, turn_id: int) -> void:
	if turn_id < 0:
		_metrics.text = "Nothing recognised."


func _on_transcript_received(turn_id: int, npc_id: String, text: String) -> void:
	_turn_id = turn_id
	_transcript.append_text("\n[b]You[/b] [i](voice)[/i][b]:[/b] ")
	_transcript.add_text(text)
	_metrics.text = "Waiting for %s..." % npc_id


func _on_subtitle_received(turn_id: int, npc_id: String, text: String) -> void:
	if not _subtitled_turns.has(turn_id):
		_subtitled_turns[turn_id] = true
		_transcript.append_text("\n[b]%s:[/b] " % npc_id)
	_transcript.add_text(text + " ")


func _on_speech_started(turn_id: int, npc_id: String) -> void:
	_face.follow(_players.get(npc_id))  # its mouth and words follow the NPC speaking
	var timings: Dictionary = NpcVoice.get_turn_timings(turn_id)
	_metrics.text = (
		"%s is talking. TTFA %s (client, IPC included); playback after %s (with pre-buffer)"
		% [
			npc_id,
			_ms(timings.get("client_ttfa_ms")),
			_ms(timings.get("client_time_to_playback_ms"))
		]
	)


func _on_speech_finished(
	turn_id: int, _npc_id: String, outcome: String, timings: Dictionary, underruns: int
) -> void:
	_subtitled_turns.erase(turn_id)
	_metrics.text = (
		"%s. TTFA %s client / %s daemon; playback after %s; underruns %d; TTS RTF %s"
		% [
			outcome.capitalize(),
			_ms(timings.get("client_ttfa_ms")),
			_ms(timings.get("first_block_ms")),
			_ms(timings.get("client_time_to_playback_ms")),
			underruns,
			str(timings.get("rtf", "-")).pad_decimals(3) if timings.get("rtf") != null else "-",
		]
	)


func _on_error_received(code: String, message: String, _turn_id: int) -> void:
	_transcript.append_text("\n[color=orange]%s[/color]: " % code)
	_transcript.add_text(message)
#endregion
