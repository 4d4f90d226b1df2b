extends RefCounted
## The scenes of the [code]NpcVoice[/code] autoload (PROTOCOL.md section 3.8): several NPCs
## talking in turn, the player able to join in. Sends [code]scene_start[/code] and
## [code]scene_end[/code] after checking locally what it can; each [code]scene_line[/code]
## becomes a deferred turn of [code]turn_table.gd[/code] (it keeps its blocks) that starts on its
## NPC's player only once the scene's previous line has finished playing here, so that two lines
## of a scene never play at once, whatever the timing of the network and the mixer. A
## [code]scene_cut[/code] (the player spoke into the scene) ends the line playing early. A scene
## ends with one [signal scene_ended], after the daemon's [code]scene_ended[/code] and once every
## line of it has finished here. The autoload re-emits the signals.

#region Signals
## See the autoload's signal of the same name.
signal scene_line_started(scene_id: int, turn_id: int, npc_id: String, answers_player: bool)
## See the autoload's signal of the same name.
signal scene_ended(scene_id: int, reason: String, lines: int)
## See the autoload's signal of the same name.
signal error_received(code: String, message: String, turn_id: int)
#endregion

#region Constants
const SceneRecord := preload("scene_record.gd")
const TurnTable := preload("turn_table.gd")
## Fewest and most NPCs in a scene (PROTOCOL.md 3.1, [code]scene_start[/code]).
const MIN_NPCS: int = 2
## See [constant MIN_NPCS].
const MAX_NPCS: int = 6
## Largest [code]max_exchanges[/code] the daemon accepts.
const MAX_EXCHANGES: int = 200
## Longest [code]situation[/code] the daemon accepts, in characters.
const MAX_SITUATION_CHARS: int = 2000
#endregion

#region Public Variables
## True once a scene was started on the current connection: the daemon then chooses turn ids
## (its lines') that the client may not have heard of yet (see [code]npc_voice_client.gd[/code]).
var used: bool = false
#endregion

#region Private Variables
var _turns: TurnTable
var _send: Callable
var _is_connected: Callable
var _scenes: Dictionary = {}
var _next_scene_id: int = 1
var _stray_unknown_scene_errors: int = 0
#endregion


#region Engine Callbacks
## [param turns]: the autoload's turn table (it plays the lines); [param send]: sends a message
## Dictionary; [param is_connected]: true once the handshake is done.
func _init(turns: TurnTable, send: Callable, is_connected: Callable) -> void:
	_turns = turns
	_send = send
	_is_connected = is_connected
	_turns.speech_finished.connect(_on_speech_finished)


#endregion


#region Public Functions
## Starts a scene (see the autoload's [code]start_scene[/code]); returns its id. A scene
## refused here ends on the next frame: [signal error_received] (not_connected, bad_scene),
## then [signal scene_ended] "error".
func start(npc_ids: Array, situation: String, max_exchanges: int) -> int:
	var scene := SceneRecord.new()
	scene.scene_id = _next_scene_id
	_next_scene_id += 1
	_scenes[scene.scene_id] = scene
	var problem: String = _start_problem(npc_ids, situation, max_exchanges)
	if not _is_connected.call() or problem != "":
		scene.end_requested = true
		scene.end_reason = "error"
		if not _is_connected.call():
			_end_refused.call_deferred(scene, "not_connected", "not connected")
		else:
			_end_refused.call_deferred(scene, "bad_scene", problem)
		return scene.scene_id
	for npc_id: Variant in npc_ids:
		scene.npc_ids.append(str(npc_id))
	var message: Dictionary = {
		"type": "scene_start",
		"scene_id": scene.scene_id,
		"npc_ids": Array(scene.npc_ids),
		"situation": situation,
	}
	if max_exchanges > 0:
		message["max_exchanges"] = max_exchanges
	_send.call(message)
	used = true
	return scene.scene_id


## Ends scene [param scene_id] (see the autoload's [code]end_scene[/code]): its lines stop now.
func end(scene_id: int) -> void:
	var scene: SceneRecord = _scenes.get(scene_id)
	if scene == null or scene.end_requested:
		return
	scene.end_requested = true
	if scene.end_reason == "" and _is_connected.call():
		scene.end_sent = true
		_send.call({"type": "scene_end", "scene_id": scene_id})
	scene.queue.clear()
	for turn_id: int in scene.turn_ids.duplicate():
		_turns.silence(turn_id)  # no cancel: the daemon cancels its line itself


## True from [method start] until [signal scene_ended], unless it was ended or refused.
func is_running(scene_id: int) -> bool:
	var scene: SceneRecord = _scenes.get(scene_id)
	return scene != null and not scene.end_requested and scene.end_reason == ""


## [code, message] when a [code]say[/code] to [param npc_id] cannot go into the scene
## [param scene_value] ([code]options.scene_id[/code]), else empty.
func say_problem(scene_value: Variant, npc_id: String) -> PackedStringArray:
	if not (scene_value is int or scene_value is float):
		return PackedStringArray(
			["unknown_scene", "options.scene_id must be a scene id, not %s" % [scene_value]]
		)
	var scene_id: int = int(scene_value)
	if not is_running(scene_id):
		return PackedStringArray(["unknown_scene", "no scene %d is running" % scene_id])
	var scene: SceneRecord = _scenes[scene_id]
	if not npc_id in scene.npc_ids:
		return PackedStringArray(
			[
				"unknown_scene",
				"%s is not in scene %d (%s)" % [npc_id, scene_id, ", ".join(scene.npc_ids)]
			]
		)
	return PackedStringArray()


## The player's [code]say[/code] [param turn_id] went into scene [param scene_value] (null: into
## none): its answer is a line of the scene, deferred until its [code]scene_line[/code] comes
## and its moment to play.
func add_say(scene_value: Variant, turn_id: int) -> void:
	var scene: SceneRecord = null
	if scene_value is int or scene_value is float:
		scene = _scenes.get(int(scene_value))
	if scene != null:
		scene.turn_ids.append(turn_id)


## Handles [code]scene_line[/code], [code]scene_cut[/code] and [code]scene_ended[/code].
func handle_message(message: Dictionary) -> void:
	var scene: SceneRecord = _scenes.get(TurnTable.int_field(message, "scene_id"))
	if scene == null:
		return  # a scene ended here already (the connection was lost meanwhile)
	var turn_id: int = TurnTable.int_field(message, "turn_id")
	match str(message.get("type")):
		"scene_line":
			_announce(scene, message)
			return
		"scene_cut":
			if scene.turn_ids.has(turn_id):
				var after_chunk: Variant = message.get("after_chunk_index")
				_turns.cut(turn_id, int(after_chunk) if after_chunk is float else -1)
			return
	if scene.end_reason == "":
		scene.end_reason = str(message.get("reason", "error"))
		scene.end_lines = maxi(TurnTable.int_field(message, "lines"), 0)
	if scene.end_sent and scene.end_reason != "scene_end":
		_stray_unknown_scene_errors += 1  # it ended before our scene_end: unknown_scene follows
	_finish_if_over(scene)


## Handles an [code]error[/code] of no turn; returns true when it was handled here: the
## [code]unknown_scene[/code] that answers a [code]scene_end[/code] crossing the scene's end is
## dropped; a [code]bad_scene[/code] (the daemon refused a [code]scene_start[/code]) is reported,
## then ends the oldest scene not yet heard of, with reason "error".
func handle_error(message: Dictionary) -> bool:
	var code: String = str(message.get("code", ""))
	if code == "unknown_scene" and _stray_unknown_scene_errors > 0:
		_stray_unknown_scene_errors -= 1
		return true
	if code != "bad_scene":
		return false
	error_received.emit(code, str(message.get("message", "")), -1)
	for scene: SceneRecord in _scenes.values():
		if scene.announced == 0 and scene.end_reason == "":
			scene.end_reason = "error"
			end(scene.scene_id)
			_finish_if_over(scene)
			break
	return true


## The connection was lost: running scenes end with reason "disconnected" once the line
## playing has played what it received; the lines waiting never play. Call it before the turn
## table's [code]connection_lost[/code].
func connection_lost() -> void:
	used = false
	_stray_unknown_scene_errors = 0
	for scene: SceneRecord in _scenes.values():
		if scene.end_reason == "":
			scene.end_reason = "disconnected"
			scene.end_lines = scene.announced
		scene.end_requested = true
		for line: Dictionary in scene.queue:
			_turns.silence(line["turn_id"])
		scene.queue.clear()
		_finish_if_over(scene)


#endregion


#region Private Functions
## Why [method start] cannot send this scene, or "".
func _start_problem(npc_ids: Array, situation: String, max_exchanges: int) -> String:
	var npcs_problem: String = _npcs_problem(npc_ids)
	if npcs_problem != "":
		return npcs_problem
	if max_exchanges != -1 and (max_exchanges < 1 or max_exchanges > MAX_EXCHANGES):
		return (
			"max_exchanges must be 1 to %d (or -1: the daemon's default), not %d"
			% [MAX_EXCHANGES, max_exchanges]
		)
	if situation.length() > MAX_SITUATION_CHARS:
		return (
			"the situation has %d characters; the limit is %d"
			% [situation.length(), MAX_SITUATION_CHARS]
		)
	return ""


## Why [param npc_ids] cannot make a scene (their number, a duplicate, one unknown), or "".
func _npcs_problem(npc_ids: Array) -> String:
	if npc_ids.size() < MIN_NPCS or npc_ids.size() > MAX_NPCS:
		return "a scene has %d to %d NPCs, not %d" % [MIN_NPCS, MAX_NPCS, npc_ids.size()]
	var known: Dictionary = _turns.npcs()
	var seen: Dictionary = {}
	for npc_id: Variant in npc_ids:
		if not (npc_id is String or npc_id is StringName):
			return "npc_ids holds NPC ids (strings), not %s" % [npc_id]
		if seen.has(str(npc_id)):
			return "%s is in the scene twice" % npc_id
		seen[str(npc_id)] = true
		if not known.has(str(npc_id)):
			var names: PackedStringArray = PackedStringArray(known.keys())
			return "no NPC %s; the daemon voices %s" % [npc_id, ", ".join(names)]
	return ""


func _end_refused(scene: SceneRecord, code: String, message: String) -> void:
	error_received.emit(code, message, -1)
	_finish_if_over(scene)


## A [code]scene_line[/code]: its turn waits (deferred) until the line before it has played.
func _announce(scene: SceneRecord, message: Dictionary) -> void:
	var turn_id: int = TurnTable.int_field(message, "turn_id")
	var npc_id: String = str(message.get("npc_id", ""))
	var answers_player: bool = message.get("answers_player", false) == true
	scene.announced += 1
	if not scene.turn_ids.has(turn_id):
		if _turns.has_turn(turn_id):
			return  # not a turn of this scene: leave it alone
		_turns.begin_turn(turn_id, npc_id, {}, true)
		scene.turn_ids.append(turn_id)
	elif not _turns.has_turn(turn_id):
		return  # the player's say already ended here
	if scene.end_requested:
		_turns.silence(turn_id)  # released before our scene_end reached the daemon
		return
	scene.queue.append({"turn_id": turn_id, "npc_id": npc_id, "answers_player": answers_player})
	_advance(scene)


## Starts the next line waiting, when no line of the scene plays.
func _advance(scene: SceneRecord) -> void:
	while scene.current_turn_id < 0 and not scene.queue.is_empty() and not scene.end_requested:
		var line: Dictionary = scene.queue.pop_front()
		var turn_id: int = line["turn_id"]
		if not _turns.has_turn(turn_id):
			continue  # ended while it waited (a cancel, an error)
		scene.current_turn_id = turn_id
		scene_line_started.emit(scene.scene_id, turn_id, line["npc_id"], line["answers_player"])
		_turns.start_deferred(turn_id)


func _finish_if_over(scene: SceneRecord) -> void:
	if scene.end_reason == "" or not scene.turn_ids.is_empty():
		return
	if _scenes.get(scene.scene_id) != scene:
		return  # emitted already
	_scenes.erase(scene.scene_id)
	scene_ended.emit(scene.scene_id, scene.end_reason, scene.end_lines)


#endregion


#region Signal Handlers
func _on_speech_finished(
	turn_id: int, _npc_id: String, _outcome: String, _timings: Dictionary, _underruns: int
) -> void:
	for scene: SceneRecord in _scenes.values():
		if scene.turn_ids.has(turn_id):
			scene.turn_ids.erase(turn_id)
			if scene.current_turn_id == turn_id:
				scene.current_turn_id = -1
				_advance(scene)
			_finish_if_over(scene)
			return
#endregion
