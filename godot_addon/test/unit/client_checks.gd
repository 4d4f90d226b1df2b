extends RefCounted
## Unit checks of the [code]NpcVoice[/code] autoload's voice logic, run by
## [code]run_tests.gd[/code]: an instance of [code]npc_voice_client.gd[/code] that never
## connects is fed the daemon's messages by hand ([code]fake_daemon.gd[/code]). The
## player's speech silences the NPC it addresses at once, without a [code]cancel[/code] (the
## daemon cancels), drops that turn's later blocks, and neither another NPC nor a game with
## barge-in off is silenced; a voice turn plays like a typed one; a [code]say[/code] after
## voice input skips ids ahead; bad [code]start_listening[/code] calls are refused locally.

#region Constants
const FakeDaemon := preload("fake_daemon.gd")
const Client := preload("res://addons/npc_voice/npc_voice_client.gd")
const TurnState := preload("res://addons/npc_voice/turn_state.gd")
const ENABLE_INPUT: String = "audio/driver/enable_input"
## Frames to wait at most for the mixer (real time: about 10 s at 60 fps).
const MAX_WAIT_FRAMES: int = 600
#endregion

#region Private Variables
var _check: Callable
var _client: Client = null
var _events: Array[String] = []
#endregion


#region Engine Callbacks
## [param check]: the runner's [code]check(condition: bool, what: String)[/code].
func _init(check: Callable) -> void:
	_check = check


#endregion


#region Public Functions
## Runs the checks; [param tree] must be running (the client's players play in it).
func run(tree: SceneTree) -> void:
	_client = FakeDaemon.new_client(tree)
	_client.subtitle_received.connect(func(_t: int, _n: String, text: String) -> void: _note(text))
	_client.speech_finished.connect(_on_speech_finished)
	_client.player_speech_started.connect(func(npc: String) -> void: _note("heard " + npc))
	_client.player_speech_ended.connect(func(_n: String, t: int) -> void: _note("ended %d" % t))
	_client.transcript_received.connect(
		func(t: int, _n: String, _x: String) -> void: _note("said %d" % t)
	)
	_daemon_says({"type": "welcome", "protocol": 1, "npcs": []})
	await _test_barge_in_and_a_voice_turn(tree)
	_test_who_is_silenced()
	_client.stop_listening(true)
	_test_refused_starts()
	var types: Array[String] = []
	for message: Dictionary in _sent():
		if message["type"] != "mic_audio":  # silence from the headless microphone
			types.append(message["type"])
	_check.call(types == ["say", "listen_start", "say", "listen_stop"], "sent: %s" % [types])
	_client.disconnect_from_daemon()
	_client.queue_free()


#endregion


#region Private Functions
func _note(event: String) -> void:
	_events.append(event)


func _daemon_says(message: Dictionary) -> void:
	FakeDaemon.says(_client, message)


func _block(turn_id: int, seq: int) -> void:
	FakeDaemon.block(_client, turn_id, seq)


func _sent() -> Array[Dictionary]:
	return FakeDaemon.sent(_client)


func _turn(turn_id: int) -> TurnState:
	return _client._turns._turns.get(turn_id)


func _test_barge_in_and_a_voice_turn(tree: SceneTree) -> void:
	var npc_turn: int = _client.say("oracle", "Tell me a story.")
	_block(npc_turn, 0)
	_check.call(_client.start_listening("oracle", "open_mic"), "listening")
	_daemon_says({"type": "speech_started", "npc_id": "oracle", "at_ms": 320.0})
	var turn: TurnState = _turn(npc_turn)
	_check.call(turn.stopped and turn.terminal == "", "the player's speech silences the NPC")
	var cancels: int = 0
	for message: Dictionary in _sent():
		cancels += 1 if message["type"] == "cancel" else 0
	_check.call(cancels == 0, "no cancel: the daemon ends the turn by itself")
	_block(npc_turn, 1)
	_check.call(turn.next_seq == 1, "a block of the silenced turn is dropped")
	_daemon_says({"type": "cancelled", "turn_id": npc_turn, "reason": "barge_in"})
	var voice_turn: int = npc_turn + 6
	_daemon_says(
		{"type": "speech_ended", "npc_id": "oracle", "at_ms": 900.0, "turn_id": voice_turn}
	)
	_daemon_says(
		{
			"type": "transcript",
			"turn_id": voice_turn,
			"npc_id": "oracle",
			"text": "What is in the temple?",
			"speech_end_ms": 900.0
		}
	)
	_daemon_says({"type": "subtitle", "turn_id": voice_turn, "chunk_index": 0, "text": "Gold."})
	_block(voice_turn, 0)
	_daemon_says({"type": "done", "turn_id": voice_turn, "block_count": 1, "sample_count": 4})
	var finished: String = "finished %d done" % voice_turn
	for i: int in MAX_WAIT_FRAMES:
		if finished in _events:
			break
		await tree.process_frame
	var expected: Array[String] = [
		"heard oracle",
		"finished %d cancelled" % npc_turn,
		"ended %d" % voice_turn,
		"said %d" % voice_turn,
		"Gold.",
		finished
	]
	_check.call(_events == expected, "voice events: %s" % [_events])
	var next: int = _client.say("oracle", "Really?")
	_check.call(next == voice_turn + 1 + Client.VOICE_TURN_ID_GAP, "a say skips ids ahead")


## Speech addressed to another NPC, or with barge-in off, silences nobody.
func _test_who_is_silenced() -> void:
	var talking: int = _client._turns.next_turn_id - 1
	_daemon_says({"type": "speech_started", "npc_id": "blacksmith", "at_ms": 5.0})
	_check.call(not _turn(talking).stopped, "another NPC's listener does not silence the oracle")
	_client.barge_in = false
	_daemon_says({"type": "speech_started", "npc_id": "oracle", "at_ms": 9.0})
	_check.call(not _turn(talking).stopped, "barge-in off: the oracle talks on")
	_client.barge_in = true


## [code]start_listening[/code] refuses an unknown mode, an unknown priority and a project
## without microphone input, before sending anything.
func _test_refused_starts() -> void:
	var errors: Array[String] = []
	var on_error: Callable = func(code: String, message: String, _turn: int) -> void:
		errors.append("%s: %s" % [code, message])
	_client.error_received.connect(on_error)
	_check.call(not _client.start_listening("oracle", "always_on"), "mode always_on refused")
	_check.call(not _client.start_listening("oracle", "open_mic", {"priority": 3}), "priority 3")
	var enable_input: Variant = ProjectSettings.get_setting(ENABLE_INPUT)
	ProjectSettings.set_setting(ENABLE_INPUT, false)
	_check.call(not _client.start_listening("oracle", "open_mic"), "no microphone input")
	ProjectSettings.set_setting(ENABLE_INPUT, enable_input)
	_client.error_received.disconnect(on_error)
	var codes: Array[String] = []
	for error: String in errors:
		codes.append(error.get_slice(":", 0))
	_check.call(codes == ["invalid_mode", "invalid_priority", "mic_unavailable"], str(errors))
	_check.call(errors.size() == 3 and ENABLE_INPUT in errors[2], "the setting is named")
	_check.call(not _client.is_listening(), "not listening after refusals")


#endregion


#region Signal Handlers
func _on_speech_finished(
	turn_id: int, _npc_id: String, outcome: String, _timings: Dictionary, _underruns: int
) -> void:
	_note("finished %d %s" % [turn_id, outcome])
#endregion
