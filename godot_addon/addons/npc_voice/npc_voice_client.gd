extends Node
## The [code]NpcVoice[/code] autoload: talks to the npc-voice daemon (hello/welcome, say,
## cancel over [code]zmtp_connection.gd[/code]) and hands each turn's PCM blocks to a player: the
## one in [code]options.player[/code], else the [NpcVoicePlayer]/[NpcVoicePlayer2D]/
## [NpcVoicePlayer3D] whose [code]npc_id[/code] matches, else a built-in non-positional one.
## Settings: [code]npc_voice/*[/code]. A lost connection is retried with backoff.
## [codeblock]
## NpcVoice.subtitle_received.connect(func(_turn, _npc, text): $Subtitle.text = text)
## NpcVoice.say("blacksmith", "Can you repair my sword?")
## [/codeblock]

#region Signals
## The handshake completed. [param welcome] is the daemon's [code]welcome[/code] message:
## [code]npcs[/code] (id, display name, profile, sample rate, pre-buffer), [code]limits[/code]...
signal connected(welcome: Dictionary)
## The connection was lost or closed after a handshake; reconnecting follows automatically.
signal disconnected(reason: String)
## Text of the chunk whose audio follows (sent just before that audio).
signal subtitle_received(turn_id: int, npc_id: String, text: String)
## The NPC started talking: playback began after the pre-buffer.
signal speech_started(turn_id: int, npc_id: String)
## The turn is over, once per [method say]. [param outcome]: "done" (heard to the end),
## "cancelled", "error" or "disconnected". [param timings]: the daemon's per-stage timings
## (ms, see PROTOCOL.md) plus [code]client_ttfa_ms[/code], [code]client_time_to_playback_ms[/code]
## and [code]lost_blocks[/code]. [param underruns]: generator mix periods that ran dry.
signal speech_finished(
	turn_id: int, npc_id: String, outcome: String, timings: Dictionary, underruns: int
)
## A problem: a daemon [code]error[/code] (its [code]code[/code]: unknown_npc, text_too_long...)
## or one of the addon's: not_connected, protocol_error, bad_message, launch_failed,
## daemon_exited. [param turn_id] is -1 when no turn is concerned.
signal error_received(code: String, message: String, turn_id: int)
#endregion

#region Constants
const Settings := preload("npc_voice_settings.gd")
const ZmtpConnection := preload("zmtp_connection.gd")
const VoiceOutput := preload("voice_output.gd")
const TurnState := preload("turn_state.gd")
const DefaultPlayer := preload("npc_voice_player.gd")
const DaemonLauncher := preload("daemon_launcher.gd")
## Wire protocol version (bridge_protocol/PROTOCOL.md).
const PROTOCOL_VERSION: int = 1
## Version of this addon, sent in [code]hello.client[/code].
const ADDON_VERSION: String = "0.1.0"
## Pre-buffer used when the daemon has not said (the "fast" profile's).
const DEFAULT_PREBUFFER_MS: int = 240
## Handshake errors that a reconnect cannot fix.
const FATAL_HANDSHAKE_ERRORS: Array = ["bad_token", "unsupported_protocol"]
#endregion

#region Public Variables
## Daemon host; from [code]npc_voice/connection/host[/code].
var host: String = "127.0.0.1"
## Daemon port; from [code]npc_voice/connection/port[/code].
var port: int = 5557
## Shared token; from [code]npc_voice/connection/token[/code].
var token: String = ""
## PCM rate asked for in [code]hello[/code] (0 = each voice's native rate);
## from [code]npc_voice/audio/sample_rate_hz[/code].
var sample_rate_hz: int = 0
#endregion

#region Private Variables
var _connection: ZmtpConnection = ZmtpConnection.new()
var _welcome: Dictionary = {}
var _npcs: Dictionary = {}
var _prebuffer_by_profile: Dictionary = {}
var _turns: Dictionary = {}
var _next_turn_id: int = 1
var _default_player: Node = null
var _launcher: DaemonLauncher = DaemonLauncher.new()
var _stray_unknown_turn_errors: int = 0
#endregion


#region Engine Callbacks
func _ready() -> void:
	process_mode = Node.PROCESS_MODE_ALWAYS  # keep answering heartbeats while the game is paused
	process_priority = -100  # read the socket before the players feed their generators
	host = Settings.get_value(Settings.HOST)
	port = Settings.get_value(Settings.PORT)
	token = Settings.get_value(Settings.TOKEN)
	sample_rate_hz = Settings.get_value(Settings.SAMPLE_RATE_HZ)
	_connection.connect_timeout_ms = Settings.get_value(Settings.CONNECT_TIMEOUT_MS)
	_connection.opened.connect(_on_connection_opened)
	_connection.closed.connect(_on_connection_closed)
	_connection.protocol_failed.connect(_on_protocol_failed)
	_connection.message_received.connect(_on_message_received)
	_default_player = DefaultPlayer.new()
	_default_player.name = "DefaultPlayer"
	_default_player.process_mode = Node.PROCESS_MODE_PAUSABLE
	add_child(_default_player)
	if Settings.get_value(Settings.AUTO_LAUNCH):
		launch_daemon()
	if Settings.get_value(Settings.AUTO_CONNECT):
		connect_to_daemon()


func _process(_delta: float) -> void:
	_connection.poll()
	if _launcher.exited():
		error_received.emit("daemon_exited", "the launched daemon process exited", -1)


func _exit_tree() -> void:
	_connection.close()
	stop_daemon()


#endregion


#region Public Functions
## Connects (or reconnects) to [member host]:[member port]; [signal connected] follows.
func connect_to_daemon() -> void:
	_connection.connect_to(host, port)


## Closes the connection; turns in flight end with outcome "disconnected".
func disconnect_from_daemon() -> void:
	_connection.close()
	_on_connection_closed("closed by the game")


## True once the handshake completed and until the connection is lost.
func is_connected_to_daemon() -> bool:
	return not _welcome.is_empty() and _connection.is_open()


## The last [code]welcome[/code] message, or an empty Dictionary.
func get_welcome() -> Dictionary:
	return _welcome


## The NPCs the daemon voices: [code]npc_id[/code], [code]display_name[/code],
## [code]profile[/code], [code]sample_rate_hz[/code], [code]prebuffer_ms[/code].
func get_npcs() -> Array[Dictionary]:
	var npcs: Array[Dictionary] = []
	for npc: Dictionary in _npcs.values():
		npcs.append(npc)
	return npcs


## Says the player's [param text] to [param npc_id]; returns the turn id. Options:
## [code]player[/code] (a voice player node to play through), [code]profile[/code] ("fast",
## "cinematic"...), [code]prebuffer_ms[/code] (override). A new turn for an NPC that is still
## talking interrupts it (barge-in): its audio stops at once. Always ends with exactly one
## [signal speech_finished], even when not connected (outcome "error", code not_connected).
func say(npc_id: String, text: String, options: Dictionary = {}) -> int:
	var turn := TurnState.new()
	turn.turn_id = _next_turn_id
	_next_turn_id += 1
	turn.npc_id = npc_id
	turn.prebuffer_ms = _prebuffer_for(npc_id, options)
	turn.output = _output_for(npc_id, options)
	turn.sent_usec = Time.get_ticks_usec()
	for other: TurnState in _turns.values():
		if other.npc_id == npc_id or (turn.output != null and other.output == turn.output):
			_interrupt(other, true)  # an explicit cancel, even where `say` would barge in
	_turns[turn.turn_id] = turn
	if turn.output != null:
		turn.output.begin_turn(turn.turn_id, turn.prebuffer_ms)
	if not is_connected_to_daemon():
		_end_turn_with_error.call_deferred(turn.turn_id, "not_connected", "not connected")
		return turn.turn_id
	var message: Dictionary = {
		"type": "say", "turn_id": turn.turn_id, "npc_id": npc_id, "text": text
	}
	if options.has("profile"):
		message["profile"] = str(options["profile"])
	_send(message)
	return turn.turn_id


## Stops [param turn_id] at once (barge-in from the game): its audio stops now, the daemon
## stops generating, and [signal speech_finished] follows with outcome "cancelled".
func cancel(turn_id: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		_interrupt(turn, true)


## Client-side timings of a turn in flight (see [signal speech_finished]); empty when unknown.
func get_turn_timings(turn_id: int) -> Dictionary:
	var turn: TurnState = _turns.get(turn_id)
	return turn.client_timings() if turn != null else {}


## Starts the daemon with the game: [code]npc_voice/daemon/command[/code] and
## [code]npc_voice/daemon/arguments[/code] (desktop platforms); it is killed again on exit.
## Returns false (and emits [signal error_received]) when it cannot start.
func launch_daemon() -> bool:
	var problem: String = _launcher.launch(port, token)
	if problem != "":
		error_received.emit("launch_failed", problem, -1)
	return problem == ""


## Kills the daemon started by [method launch_daemon], if it runs.
func stop_daemon() -> void:
	_launcher.stop()


#endregion


#region Private Functions
func _send(message: Dictionary) -> void:
	var frames: Array[PackedByteArray] = [JSON.stringify(message).to_utf8_buffer()]
	_connection.send_message(frames)


func _prebuffer_for(npc_id: String, options: Dictionary) -> int:
	if options.has("prebuffer_ms"):
		return int(options["prebuffer_ms"])
	var profile: String = str(options.get("profile", ""))
	if _prebuffer_by_profile.has(profile):
		return _prebuffer_by_profile[profile]
	var npc: Dictionary = _npcs.get(npc_id, {})
	return int(npc.get("prebuffer_ms", DEFAULT_PREBUFFER_MS))


func _output_for(npc_id: String, options: Dictionary) -> VoiceOutput:
	var player: Node = null
	if options.get("player") is Node:
		player = options["player"]
	else:
		for node: Node in get_tree().get_nodes_in_group(VoiceOutput.PLAYER_GROUP):
			if node.get(&"npc_id") == npc_id:
				player = node
				break
	if player == null:
		player = _default_player
	var output: VoiceOutput = player.get(&"voice_output") as VoiceOutput
	if output == null:
		push_warning("NpcVoice: %s is not an NPC voice player" % player.name)
		return null
	if not output.playback_started.is_connected(_on_playback_started):
		output.playback_started.connect(_on_playback_started)
		output.playback_finished.connect(_on_playback_finished)
		output.playback_aborted.connect(_on_playback_aborted)
	return output


## Stops [param turn]'s audio now and tells the daemon when [param send_cancel] and the turn
## still runs there; finishes the turn when the daemon has already ended it.
func _interrupt(turn: TurnState, send_cancel: bool) -> void:
	if not turn.stopped:
		turn.stopped = true
		if turn.output != null:
			turn.underruns = turn.output.stop_turn(turn.turn_id)
		if turn.terminal == "" and send_cancel and is_connected_to_daemon():
			turn.cancel_sent = true
			_send({"type": "cancel", "turn_id": turn.turn_id})
	if turn.terminal != "":
		_finish(turn)


func _finish(turn: TurnState) -> void:
	if not _turns.has(turn.turn_id):
		return
	_turns.erase(turn.turn_id)
	speech_finished.emit(
		turn.turn_id, turn.npc_id, turn.outcome(), turn.client_timings(), turn.underruns
	)


func _end_turn_with_error(turn_id: int, code: String, message: String) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn == null:
		return
	error_received.emit(code, message, turn_id)
	turn.terminal = "error"
	_interrupt(turn, false)


func _handle_welcome(message: Dictionary) -> void:
	_welcome = message
	_npcs.clear()
	_prebuffer_by_profile.clear()
	for npc: Variant in message.get("npcs", []):
		if npc is Dictionary:
			_npcs[str(npc.get("npc_id", ""))] = npc
			_prebuffer_by_profile[str(npc.get("profile", ""))] = int(npc.get("prebuffer_ms", 0))
	connected.emit(message)


func _handle_audio(header: Dictionary, frames: Array[PackedByteArray]) -> void:
	var turn: TurnState = _turns.get(_int_field(header, "turn_id"))
	if turn == null or turn.stopped:
		return  # a stale block of a turn that was stopped here
	var samples: int = _int_field(header, "sample_count")
	if frames.size() != 2 or frames[1].size() != 2 * samples:
		error_received.emit("bad_message", "malformed audio block", turn.turn_id)
		return
	var seq: int = _int_field(header, "seq")
	turn.lost_blocks += maxi(seq - turn.next_seq, 0)
	turn.next_seq = seq + 1
	if turn.first_block_usec < 0:
		turn.first_block_usec = Time.get_ticks_usec()
	if turn.output != null:
		turn.output.push_block(turn.turn_id, frames[1], _int_field(header, "sample_rate_hz"))


func _handle_terminal(message: Dictionary, kind: String) -> void:
	var turn: TurnState = _turns.get(_int_field(message, "turn_id"))
	if turn == null:
		return
	turn.terminal = kind
	if message.get("timings") is Dictionary:
		turn.timings = message["timings"]
	if kind == "done" and turn.cancel_sent:
		_stray_unknown_turn_errors += 1  # our cancel crossed the done: the daemon will say so
	if kind == "done" and not turn.stopped and turn.output != null and turn.output.is_alive():
		turn.output.end_turn(turn.turn_id)  # play out; speech_finished once heard
	else:
		_interrupt(turn, false)


func _handle_error(message: Dictionary) -> void:
	var code: String = str(message.get("code", ""))
	var text: String = str(message.get("message", ""))
	var turn_id: int = _int_field(message, "turn_id")
	if turn_id < 0 and code == "unknown_turn" and _stray_unknown_turn_errors > 0:
		_stray_unknown_turn_errors -= 1
		return
	error_received.emit(code, text, turn_id)
	if turn_id < 0 and code in FATAL_HANDSHAKE_ERRORS:
		_connection.close()  # retrying with the same settings cannot help
	elif turn_id >= 0:
		_handle_terminal(message, "error")


static func _int_field(message: Dictionary, key: String) -> int:
	var value: Variant = message.get(key)
	if value is float or value is int:
		return int(value)
	return -1


#endregion


#region Signal Handlers
func _on_connection_opened() -> void:
	var hello: Dictionary = {
		"type": "hello",
		"protocol": PROTOCOL_VERSION,
		"client": "godot-%s npc_voice/%s" % [Engine.get_version_info()["string"], ADDON_VERSION],
		"token": token,
	}
	if sample_rate_hz > 0:
		hello["sample_rate_hz"] = sample_rate_hz
	_send(hello)


func _on_connection_closed(reason: String) -> void:
	var was_welcomed: bool = not _welcome.is_empty()
	_welcome = {}
	_stray_unknown_turn_errors = 0
	for turn: TurnState in _turns.values():
		if turn.terminal == "":  # a turn already "done" keeps playing what it received
			turn.terminal = "disconnected"
			_interrupt(turn, false)
	if was_welcomed:
		disconnected.emit(reason)


func _on_protocol_failed(reason: String, _fatal: bool) -> void:
	error_received.emit("protocol_error", reason, -1)


func _on_message_received(frames: Array[PackedByteArray]) -> void:
	var parsed: Variant = JSON.parse_string(frames[0].get_string_from_utf8())
	if typeof(parsed) != TYPE_DICTIONARY:
		error_received.emit("bad_message", "the daemon sent a frame that is not JSON", -1)
		return
	var message: Dictionary = parsed
	match str(message.get("type", "")):
		"welcome":
			_handle_welcome(message)
		"subtitle":
			var turn: TurnState = _turns.get(_int_field(message, "turn_id"))
			if turn != null and not turn.stopped:
				subtitle_received.emit(turn.turn_id, turn.npc_id, str(message.get("text", "")))
		"audio_block":
			_handle_audio(message, frames)
		"done", "cancelled":
			_handle_terminal(message, str(message["type"]))
		"error":
			_handle_error(message)
		_:
			pass  # message types added by later protocol versions


func _on_playback_started(turn_id: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		turn.playback_usec = Time.get_ticks_usec()
		speech_started.emit(turn_id, turn.npc_id)


func _on_playback_finished(turn_id: int, underruns: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		turn.underruns = underruns
		turn.played_out = true
		if turn.terminal != "":
			_finish(turn)


func _on_playback_aborted(turn_id: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		turn.output = null  # the player is gone
		_interrupt(turn, true)
#endregion
