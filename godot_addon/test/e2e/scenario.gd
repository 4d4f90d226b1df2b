extends Node
## Base of the end-to-end scenarios (run by [code]e2e_main.gd[/code]): connects the real
## [code]NpcVoice[/code] autoload (the code under test; scenarios call it directly) to the
## daemon on [code]--port[/code] (unless it is 0), records every signal it emits, runs [method run]
## (overridden), then quits with 0. Each event is printed as one line,
## [constant MARK] + JSON (its [code]event[/code] name, its fields, the process frame); pytest
## parses them. A wait that times out prints a [code]timeout[/code] event and quits with 2.
## Waits poll once per frame with generous deadlines: nothing here depends on how fast the
## machine is, only on the order of events.

#region Signals
## Never emitted: awaited after a fatal problem, until the quit takes effect.
signal stalled
#endregion

#region Constants
## Prefix of every result line.
const MARK: String = "NPCV_E2E "
## Longest wait for one step (a reply on a slow, busy CPU included).
const TIMEOUT_S: float = 90.0
## A pre-buffer longer than any reply of the test daemon: playback starts once the whole reply
## is there, so "no underrun" holds however slowly a busy machine synthesises.
const WHOLE_REPLY_PREBUFFER_MS: int = 20000
#endregion

#region Public Variables
## Command-line options after [code]--[/code]: [code]--key=value[/code] pairs.
var args: Dictionary = {}
## Every signal of the autoload so far, as reported: [code]{"event": name, ...}[/code].
var events: Array[Dictionary] = []
#endregion


#region Engine Callbacks
func _ready() -> void:
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
	_main()


#endregion


#region Public Functions
## [code]--key=value[/code] arguments as a Dictionary.
static func parse_args(user_args: PackedStringArray) -> Dictionary:
	var parsed: Dictionary = {}
	for arg: String in user_args:
		if arg.begins_with("--") and "=" in arg:
			parsed[arg.substr(2).get_slice("=", 0)] = arg.substr(arg.find("=") + 1)
	return parsed


## The scenario itself; the autoload is connected when it starts.
func run() -> void:
	pass


## Prints one result line: [param event] with [param fields].
func report(event: String, fields: Dictionary = {}) -> void:
	var line: Dictionary = fields.duplicate()
	line["event"] = event
	line["frame"] = Engine.get_process_frames()
	print(MARK + JSON.stringify(line))


## Waits (a frame at a time) until [param condition] returns true; after
## [param timeout_s] reports [param what] as a timeout and quits.
func wait_until(condition: Callable, what: String, timeout_s: float = TIMEOUT_S) -> void:
	var deadline: int = Time.get_ticks_msec() + int(timeout_s * 1000.0)
	while not condition.call():
		if Time.get_ticks_msec() > deadline:
			report("timeout", {"waiting_for": what})
			get_tree().quit(2)
			await stalled
		await get_tree().process_frame


## The recorded events named [param event] (and for [param turn_id], when not -1; or whose
## field [param key] is [param turn_id]: e.g. "scene_id").
func events_of(event: String, turn_id: int = -1, key: String = "turn_id") -> Array[Dictionary]:
	var found: Array[Dictionary] = []
	for item: Dictionary in events:
		if item["event"] == event and (turn_id < 0 or item.get(key, -1) == turn_id):
			found.append(item)
	return found


## Waits for the first [param event] of [param turn_id] (-1: any; or of the [param key] given)
## and returns it.
func wait_for_event(event: String, turn_id: int = -1, key: String = "turn_id") -> Dictionary:
	var seen: Callable = func() -> bool: return not events_of(event, turn_id, key).is_empty()
	await wait_until(seen, "%s of %s %d" % [event, key, turn_id])
	return events_of(event, turn_id, key)[0]


## Says [param text] to [param npc_id], waits for the turn's end and returns that event.
func say_and_wait(npc_id: String, text: String, options: Dictionary = {}) -> Dictionary:
	var turn_id: int = NpcVoice.say(npc_id, text, options)
	return await wait_for_event("speech_finished", turn_id)


## Milliseconds of [param turn_id]'s audio the mixer has played (0 when unknown).
func played_ms(turn_id: int) -> float:
	var timings: Dictionary = NpcVoice.get_turn_timings(turn_id)
	return timings.get("client_played_ms", 0.0)


## Every node under [param node] that is a [param type_name] (e.g. "Button"), depth first.
static func find_all(node: Node, type_name: String) -> Array[Node]:
	var found: Array[Node] = []
	for index: int in node.get_child_count():
		var child: Node = node.get_child(index)
		if child.is_class(type_name):
			found.append(child)
		found.append_array(find_all(child, type_name))
	return found


## Types [param text] into the control that has the focus, as key presses: one a frame, or all
## in this frame when not [param one_a_frame]; with [param enter], Enter follows the last key in
## its frame.
func type_keys(text: String, one_a_frame: bool = true, enter: bool = false) -> void:
	for i: int in text.length():
		var key := InputEventKey.new()
		key.unicode = text.unicode_at(i)
		key.pressed = true
		get_viewport().push_input(key)
		if one_a_frame and i + 1 < text.length():
			await get_tree().process_frame
	if enter:
		var key := InputEventKey.new()
		key.keycode = KEY_ENTER
		key.pressed = true
		get_viewport().push_input(key)


## Records every lip-sync signal of the voice player [param player] as a [code]lip[/code] event:
## [code]kind[/code] (word, viseme, mouth, ended), [code]text[/code] (the word or viseme),
## [code]value[/code] (weight or open) and [code]played[/code] (samples of the turn the mixer
## had consumed when it fired).
func watch_lip_sync(player: Node) -> void:
	var output: RefCounted = player.get(&"voice_output")
	var lip: Callable = func(turn_id: int, kind: String, text: String, value: float) -> void:
		var played: int = output.call(&"played_samples")
		_record(
			"lip",
			{"turn_id": turn_id, "kind": kind, "text": text, "value": value, "played": played}
		)
	player.connect(&"word_started", func(t: int, w: String) -> void: lip.call(t, "word", w, 1.0))
	player.connect(
		&"viseme_changed", func(t: int, v: String, w: float) -> void: lip.call(t, "viseme", v, w)
	)
	player.connect(
		&"mouth_open_changed", func(t: int, o: float) -> void: lip.call(t, "mouth", "", o)
	)
	player.connect(&"lip_sync_ended", func(t: int) -> void: lip.call(t, "ended", "", 0.0))


## Reports every [code]timing[/code] message the daemon sends as a [code]timing_message[/code]
## event (white box: read off the connection), to compare with the [code]lip[/code] events.
func watch_timing_messages() -> void:
	NpcVoice._connection.message_received.connect(_on_frames_received)


## A file the test writes into [code]--control[/code] to signal this scenario, e.g. "frozen".
func control_file(file_name: String) -> String:
	return str(args.get("control", "user://")).path_join(file_name)


#endregion


#region Private Functions
func _main() -> void:
	NpcVoice.port = int(args.get("port", "5557"))
	if NpcVoice.port > 0:  # 0: no daemon, the scenario connects by itself (fake_peers.gd)
		NpcVoice.connect_to_daemon()
		await wait_until(func() -> bool: return NpcVoice.is_connected_to_daemon(), "connected")
	await run()
	report("scenario_finished")
	get_tree().quit(0)


func _record(event: String, fields: Dictionary) -> void:
	fields["event"] = event
	events.append(fields)
	report(event, fields)


#endregion


#region Signal Handlers
func _on_connected(welcome: Dictionary) -> void:
	_record("connected", {"npcs": welcome.get("npcs", []).size()})


func _on_disconnected(reason: String) -> void:
	_record("disconnected", {"reason": reason})


func _on_subtitle_received(turn_id: int, npc_id: String, text: String) -> void:
	var timings: Dictionary = NpcVoice.get_turn_timings(turn_id)
	var played: float = timings.get("client_played_ms", -1.0)
	_record(
		"subtitle_received",
		{"turn_id": turn_id, "npc_id": npc_id, "text": text, "played_ms": played}
	)


func _on_speech_started(turn_id: int, npc_id: String) -> void:
	_record("speech_started", {"turn_id": turn_id, "npc_id": npc_id})


func _on_speech_finished(
	turn_id: int, npc_id: String, outcome: String, timings: Dictionary, underruns: int
) -> void:
	_record(
		"speech_finished",
		{
			"turn_id": turn_id,
			"npc_id": npc_id,
			"outcome": outcome,
			"timings": timings,
			"underruns": underruns
		}
	)


func _on_error_received(code: String, message: String, turn_id: int) -> void:
	_record("error_received", {"code": code, "message": message, "turn_id": turn_id})


func _on_player_speech_started(npc_id: String) -> void:
	_record("player_speech_started", {"npc_id": npc_id})


func _on_player_speech_ended(npc_id: String, turn_id: int) -> void:
	_record("player_speech_ended", {"npc_id": npc_id, "turn_id": turn_id})


func _on_transcript_received(turn_id: int, npc_id: String, text: String) -> void:
	_record("transcript_received", {"turn_id": turn_id, "npc_id": npc_id, "text": text})


func _on_scene_line_started(
	scene_id: int, turn_id: int, npc_id: String, answers_player: bool
) -> void:
	var fields: Dictionary = {
		"scene_id": scene_id, "turn_id": turn_id, "npc_id": npc_id, "answers_player": answers_player
	}
	_record("scene_line_started", fields)


func _on_scene_ended(scene_id: int, reason: String, lines: int) -> void:
	_record("scene_ended", {"scene_id": scene_id, "reason": reason, "lines": lines})


func _on_frames_received(frames: Array[PackedByteArray]) -> void:
	var message: Variant = JSON.parse_string(frames[0].get_string_from_utf8())
	if message is Dictionary and message.get("type") == "timing":
		var fields: Dictionary = message.duplicate()
		fields.erase("type")
		fields["turn_id"] = int(fields.get("turn_id", -1))
		report("timing_message", fields)
#endregion
