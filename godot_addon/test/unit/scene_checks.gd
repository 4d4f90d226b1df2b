extends RefCounted
## Unit checks of scenes in the [code]NpcVoice[/code] autoload ([code]scene_table.gd[/code]), run
## by [code]run_tests.gd[/code], the daemon played by hand ([code]fake_daemon.gd[/code]): scenes
## refused here (number of NPCs, duplicates, unknown NPCs, values out of range) end on the next
## frame and send nothing; a line announced while the previous one still plays waits, with its
## blocks and subtitles, until that one has finished playing, then plays on its NPC's player;
## the player's [code]say[/code] into a scene waits for its answer without interrupting anyone;
## [code]scene_ended[/code] is emitted once the last line has played; [code]end_scene[/code]
## silences the scene at once without a [code]cancel[/code]; a [code]scene_end[/code] crossing
## the scene's own end leaves no stray error; a [code]scene_cut[/code] ends the line playing at
## the end of a chunk (later chunks dropped, received or not; playing out before its
## [code]done[/code] comes) or at once; a [code]bad_scene[/code] ends the scene it refused; a
## lost connection ends the scene.

#region Constants
const FakeDaemon := preload("fake_daemon.gd")
const Client := preload("res://addons/npc_voice/npc_voice_client.gd")
const VoicePlayer := preload("res://addons/npc_voice/npc_voice_player.gd")
const TurnState := preload("res://addons/npc_voice/turn_state.gd")
const VoiceOutput := preload("res://addons/npc_voice/voice_output.gd")
## Frames to wait at most for the mixer (real time: about 10 s at 60 fps).
const MAX_WAIT_FRAMES: int = 600
## A line still playing when the next one comes: 0.3 s at 22050 Hz.
const LONG_LINE_SAMPLES: int = 6615
## The daemon's NPCs (no pre-buffer: a line plays as soon as it has a block).
const NPCS: Array = [
	{"npc_id": "smith", "profile": "fast", "prebuffer_ms": 0},
	{"npc_id": "inn", "profile": "fast", "prebuffer_ms": 0},
	{"npc_id": "bard", "profile": "fast", "prebuffer_ms": 0},
]
#endregion

#region Private Variables
var _check: Callable
var _tree: SceneTree = null
var _client: Client = null
var _players: Dictionary = {}
var _events: Array[String] = []
var _error_messages: Array[String] = []
var _busy_at_line_start: Array[String] = []
var _played_ms: Dictionary = {}
#endregion


#region Engine Callbacks
## [param check]: the runner's [code]check(condition: bool, what: String)[/code].
func _init(check: Callable) -> void:
	_check = check


#endregion


#region Public Functions
## Runs the checks; [param tree] must be running (the players play in it).
func run(tree: SceneTree) -> void:
	_tree = tree
	_client = FakeDaemon.new_client(tree)
	for npc_id: String in ["smith", "inn"]:
		var player: Node = VoicePlayer.new()
		player.set(&"npc_id", npc_id)
		tree.root.add_child(player)
		_players[npc_id] = player
	_client.scene_line_started.connect(_on_scene_line_started)
	_client.scene_ended.connect(_on_scene_ended)
	_client.speech_finished.connect(_on_speech_finished)
	_client.subtitle_received.connect(_on_subtitle_received)
	_client.error_received.connect(_on_error_received)
	var limits: Dictionary = {"max_text_chars": 500, "max_message_bytes": 65536}
	FakeDaemon.says(_client, {"type": "welcome", "protocol": 1, "npcs": NPCS, "limits": limits})
	await _test_refused_scenes()
	await _test_lines_play_in_turn()
	await _test_end_scene()
	_test_end_crossing_the_scenes_end()
	await _test_scene_cut()
	_test_refused_by_the_daemon()
	await _test_connection_lost()
	_client.queue_free()
	for player: Node in _players.values():
		player.queue_free()


#endregion


#region Private Functions
func _wait_for(event: String) -> void:
	for i: int in MAX_WAIT_FRAMES:
		if event in _events:
			return
		await _tree.process_frame
	_check.call(false, "no %s in %s" % [event, _events])


func _output(npc_id: String) -> VoiceOutput:
	return _players[npc_id].get(&"voice_output")


func _turn(turn_id: int) -> TurnState:
	return _client._turns._turns.get(turn_id)


func _line(scene_id: int, turn_id: int, npc_id: String, answers_player: bool = false) -> void:
	var line: Dictionary = {
		"type": "scene_line",
		"scene_id": scene_id,
		"turn_id": turn_id,
		"npc_id": npc_id,
		"answers_player": answers_player
	}
	FakeDaemon.says(_client, line)


func _done(turn_id: int) -> void:
	FakeDaemon.says(_client, {"type": "done", "turn_id": turn_id, "block_count": 1})


func _test_refused_scenes() -> void:
	var sent: int = FakeDaemon.sent(_client).size()
	var seven: Array = ["smith", "inn", "bard", "a", "b", "c", "d"]
	var cases: Array[Array] = [
		[["smith"], "", -1, "2 to 6 NPCs, not 1"],
		[seven, "", -1, "not 7"],
		[["smith", "smith"], "", -1, "smith is in the scene twice"],
		[["smith", "ghost"], "", -1, "no NPC ghost; the daemon voices smith, inn, bard"],
		[["smith", 3], "", -1, "not 3"],
		[["smith", "inn"], "", 0, "max_exchanges must be 1 to 200"],
		[["smith", "inn"], "x".repeat(2001), -1, "the situation has 2001 characters"],
	]
	var ids: Array[int] = []
	for case: Array in cases:
		ids.append(_client.start_scene(case[0], case[1], case[2]))
	_check.call(_events.is_empty(), "a refused scene ends on the next frame")
	await _tree.process_frame
	for i: int in cases.size():
		var index: int = _events.find("ended %d error 0" % ids[i])
		_check.call(index > 0 and _events[index - 1] == "error bad_scene -1", "refused %d" % i)
		var said: String = _error_messages[i] if i < _error_messages.size() else ""
		_check.call(cases[i][3] in said, "%s in %s" % [cases[i][3], said])
	_check.call(FakeDaemon.sent(_client).size() == sent, "a refused scene sends nothing")
	_events.clear()


## Three lines: the second comes while the first plays and waits for it, the third answers the
## player; the scene ends once the third has played.
func _test_lines_play_in_turn() -> void:
	var since: int = FakeDaemon.sent(_client).size()
	var scene: int = _client.start_scene(["smith", "inn"], "They argue.", 3)
	var start: Dictionary = FakeDaemon.sent(_client)[since]
	_check.call(
		(
			start["type"] == "scene_start"
			and int(start["scene_id"]) == scene
			and start["npc_ids"] == ["smith", "inn"]
			and start["situation"] == "They argue."
			and int(start["max_exchanges"]) == 3
		),
		"scene_start sent: %s" % [start]
	)
	var first: int = _client._turns.next_turn_id + 3  # the daemon's choice
	_line(scene, first, "smith")
	FakeDaemon.says(_client, {"type": "subtitle", "turn_id": first, "chunk_index": 0, "text": "A"})
	FakeDaemon.block(_client, first, 0, LONG_LINE_SAMPLES)
	_done(first)
	_line(scene, first + 1, "inn")
	FakeDaemon.says(
		_client, {"type": "subtitle", "turn_id": first + 1, "chunk_index": 0, "text": "B"}
	)
	FakeDaemon.block(_client, first + 1, 0)
	_done(first + 1)
	_check.call(_events == ["line %d %d smith false" % [scene, first]], "first: %s" % [_events])
	_check.call(_output("smith").current_turn_id() == first, "the first line on its player")
	_check.call(_turn(first + 1).deferred, "the second line waits")
	_check.call(_output("inn").current_turn_id() == -1, "its player is silent")
	await _wait_for("finished %d done" % (first + 1))
	var joined: int = _client.say("inn", "Is that fair?", {"scene_id": scene})
	var say: Dictionary = FakeDaemon.sent(_client)[-1]
	_check.call(say["type"] == "say" and int(say["scene_id"]) == scene, "say: %s" % [say])
	_check.call(joined > first + 1 + 999 and _turn(joined).deferred, "the say waits, ids ahead")
	var outsider: int = _client.say("bard", "And you?", {"scene_id": scene})
	var nowhere: int = _client.say("inn", "Hello?", {"scene_id": 99})
	_line(scene, joined, "inn", true)
	FakeDaemon.block(_client, joined, 0)
	_done(joined)
	FakeDaemon.says(
		_client, {"type": "scene_ended", "scene_id": scene, "reason": "max_exchanges", "lines": 3}
	)
	_check.call(not "ended %d max_exchanges 3" % scene in _events, "not before its last line")
	await _wait_for("ended %d max_exchanges 3" % scene)
	var expected: Array[String] = [
		"line %d %d smith false" % [scene, first],
		"sub %d A" % first,
		"finished %d done" % first,
		"line %d %d inn false" % [scene, first + 1],
		"sub %d B" % (first + 1),
		"finished %d done" % (first + 1),
		"line %d %d inn true" % [scene, joined],
		"error unknown_scene %d" % outsider,
		"finished %d error" % outsider,
		"error unknown_scene %d" % nowhere,
		"finished %d error" % nowhere,
		"finished %d done" % joined,
		"ended %d max_exchanges 3" % scene,
	]
	_check.call(_events == expected, "scene events: %s" % [_events])
	_check.call(
		_busy_at_line_start == ["", "", ""], "a line starts alone: %s" % [_busy_at_line_start]
	)
	_check.call(not "cancel" in FakeDaemon.sent_types(_client, since), "nobody was cancelled")
	_events.clear()


func _test_end_scene() -> void:
	var scene: int = _client.start_scene(["inn", "smith"])
	var since: int = FakeDaemon.sent(_client).size()
	_check.call(not FakeDaemon.sent(_client)[-1].has("max_exchanges"), "no max_exchanges sent")
	var speaking: int = _client._turns.next_turn_id
	_line(scene, speaking, "inn")
	FakeDaemon.block(_client, speaking, 0, LONG_LINE_SAMPLES)
	_line(scene, speaking + 1, "smith")
	FakeDaemon.block(_client, speaking + 1, 0)
	_done(speaking + 1)
	await _tree.process_frame
	_client.end_scene(scene)
	_check.call(FakeDaemon.sent_types(_client, since) == ["scene_end"], "scene_end, no cancel")
	_check.call(_output("inn").current_turn_id() == -1, "the line speaking stops at once")
	FakeDaemon.says(_client, {"type": "cancelled", "turn_id": speaking, "reason": "scene_end"})
	FakeDaemon.says(
		_client, {"type": "scene_ended", "scene_id": scene, "reason": "scene_end", "lines": 1}
	)
	_client.end_scene(scene)
	var expected: Array[String] = [
		"line %d %d inn false" % [scene, speaking],
		"finished %d cancelled" % (speaking + 1),
		"finished %d cancelled" % speaking,
		"ended %d scene_end 1" % scene,
	]
	_check.call(_events == expected, "ended: %s" % [_events])
	_check.call(FakeDaemon.sent_types(_client, since) == ["scene_end"], "ended once")
	_events.clear()


## The scene ends by itself while our scene_end is on its way: the daemon answers it with an
## unknown_scene error that must not reach the game (a second one does).
func _test_end_crossing_the_scenes_end() -> void:
	var scene: int = _client.start_scene(["inn", "smith"], "", 1)
	var line: int = _client._turns.next_turn_id
	_line(scene, line, "inn")
	FakeDaemon.block(_client, line, 0, LONG_LINE_SAMPLES)
	_done(line)
	_client.end_scene(scene)
	FakeDaemon.says(
		_client, {"type": "scene_ended", "scene_id": scene, "reason": "max_exchanges", "lines": 1}
	)
	var stray: Dictionary = {"type": "error", "code": "unknown_scene", "turn_id": null}
	FakeDaemon.says(_client, stray)
	var expected: Array[String] = [
		"line %d %d inn false" % [scene, line],
		"finished %d cancelled" % line,
		"ended %d max_exchanges 1" % scene,
	]
	_check.call(_events == expected, "crossing: %s" % [_events])
	FakeDaemon.says(_client, stray)
	_check.call(_events.back() == "error unknown_scene -1", "a second one is reported")
	_events.clear()


## The player spoke into the scene: the line playing (three chunks received) plays only its
## first chunk, the line after it (waiting) is cut at once.
func _test_scene_cut() -> void:
	var scene: int = _client.start_scene(["smith", "inn"])
	var line: int = _client._turns.next_turn_id
	_line(scene, line, "smith")
	for chunk: int in 3:
		var subtitle: String = "C%d" % chunk
		FakeDaemon.says(
			_client, {"type": "subtitle", "turn_id": line, "chunk_index": chunk, "text": subtitle}
		)
		FakeDaemon.block(_client, line, chunk, LONG_LINE_SAMPLES, chunk)
	_line(scene, line + 1, "inn")
	FakeDaemon.block(_client, line + 1, 0)
	await _tree.process_frame
	var cut: Dictionary = {"type": "scene_cut", "scene_id": scene, "after_chunk_index": 0}
	cut["turn_id"] = line
	FakeDaemon.says(_client, cut)
	FakeDaemon.block(_client, line, 3, 4, 2)  # still on its way: dropped
	cut["turn_id"] = line + 1
	cut["after_chunk_index"] = -1
	FakeDaemon.says(_client, cut)
	for i: int in MAX_WAIT_FRAMES:
		if _output("smith").current_turn_id() != line:
			break
		await _tree.process_frame
	_check.call(_turn(line).played_out, "the cut line played to its cut before its done")
	_done(line)
	await _wait_for("finished %d done" % line)
	var expected: Array[String] = [
		"line %d %d smith false" % [scene, line], "sub %d C0" % line, "finished %d done" % line
	]
	_check.call(_events.slice(0, 3) == expected, "cut: %s" % [_events])
	var chunk_ms: float = LONG_LINE_SAMPLES * 1000.0 / 22050
	_check.call(is_equal_approx(_played_ms[line], chunk_ms), "played %s" % _played_ms[line])
	_check.call(_events.back() == "line %d %d inn false" % [scene, line + 1], str(_events))
	_check.call(not _players["inn"].get(&"playing"), "a line cut at once does not play")
	FakeDaemon.says(_client, {"type": "cancelled", "turn_id": line + 1, "reason": "barge_in"})
	_check.call(_events.back() == "finished %d cancelled" % (line + 1), str(_events))
	_client.end_scene(scene)
	FakeDaemon.says(
		_client, {"type": "scene_ended", "scene_id": scene, "reason": "scene_end", "lines": 2}
	)
	_check.call(_events.back() == "ended %d scene_end 2" % scene, "cut scene: %s" % [_events])
	_events.clear()


func _test_refused_by_the_daemon() -> void:
	var scene: int = _client.start_scene(["inn", "smith"])
	FakeDaemon.says(_client, {"type": "error", "code": "bad_scene", "turn_id": null})
	var expected: Array[String] = ["error bad_scene -1", "ended %d error 0" % scene]
	_check.call(_events == expected, "refused by the daemon: %s" % [_events])
	_events.clear()


func _test_connection_lost() -> void:
	var scene: int = _client.start_scene(["inn", "smith"])
	var line: int = _client._turns.next_turn_id
	_line(scene, line, "inn")
	FakeDaemon.block(_client, line, 0, LONG_LINE_SAMPLES)
	_client.disconnect_from_daemon()
	var offline: int = _client.start_scene(["inn", "smith"])
	var expected: Array[String] = [
		"line %d %d inn false" % [scene, line],
		"finished %d disconnected" % line,
		"ended %d disconnected 1" % scene,
	]
	_check.call(_events == expected, "connection lost: %s" % [_events])
	await _tree.process_frame
	expected.append_array(["error not_connected -1", "ended %d error 0" % offline])
	_check.call(_events == expected and offline > scene, "offline: %s" % [_events])


#endregion


#region Signal Handlers
func _on_scene_line_started(
	scene_id: int, turn_id: int, npc_id: String, answers_player: bool
) -> void:
	_events.append("line %d %d %s %s" % [scene_id, turn_id, npc_id, answers_player])
	var busy: PackedStringArray = []
	for player: Node in _players.values():
		if player.get(&"playing"):
			busy.append(player.get(&"npc_id"))
	_busy_at_line_start.append(",".join(busy))


func _on_scene_ended(scene_id: int, reason: String, lines: int) -> void:
	_events.append("ended %d %s %d" % [scene_id, reason, lines])


func _on_speech_finished(
	turn_id: int, _npc_id: String, outcome: String, timings: Dictionary, _underruns: int
) -> void:
	_events.append("finished %d %s" % [turn_id, outcome])
	_played_ms[turn_id] = timings.get("client_played_ms", -1.0)


func _on_subtitle_received(turn_id: int, _npc_id: String, text: String) -> void:
	_events.append("sub %d %s" % [turn_id, text])


func _on_error_received(code: String, message: String, turn_id: int) -> void:
	_events.append("error %s %d" % [code, turn_id])
	_error_messages.append(message)
#endregion
