extends Node
## The [code]NpcVoice[/code] autoload: talks to the npc-voice daemon (hello/welcome, say,
## cancel over [code]zmtp_connection.gd[/code]) and hands each turn's PCM blocks to a player
## ([code]turn_table.gd[/code]): the one in [code]options.player[/code], else the
## [NpcVoicePlayer]/[NpcVoicePlayer2D]/[NpcVoicePlayer3D] whose [code]npc_id[/code] matches,
## else a built-in non-positional one.
## Voice input ([method start_listening]): the microphone is streamed to the daemon, whose
## transcript starts a voice turn played like a [method say] turn. Scenes: [method start_scene].
## Typing: [method notify_typing]. Lip sync: the voice players' [code]word_started[/code],
## [code]viseme_changed[/code], [code]mouth_open_changed[/code] (asked for in the handshake when
## [member lip_sync] is on). Settings: [code]npc_voice/*[/code]. A lost connection is retried.
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
## Text of a chunk of the reply, emitted when the chunk's first sample is played (the daemon
## sends it earlier, just before the chunk's audio, which then waits in the pre-buffer).
signal subtitle_received(turn_id: int, npc_id: String, text: String)
## The NPC started talking: playback began after the pre-buffer.
signal speech_started(turn_id: int, npc_id: String)
## The turn is over, once per [method say] or voice turn. [param outcome]: "done" (heard to the
## end), "cancelled", "error" or "disconnected". [param timings]: the daemon's per-stage timings
## (ms, see PROTOCOL.md) plus [code]client_ttfa_ms[/code] (from the [code]say[/code], or from
## sending the end of the player's speech), [code]client_time_to_playback_ms[/code],
## [code]client_played_ms[/code] (audio the mixer played) and [code]lost_blocks[/code].
## [param underruns]: generator mix periods that ran dry.
signal speech_finished(
	turn_id: int, npc_id: String, outcome: String, timings: Dictionary, underruns: int
)
## A problem: a daemon [code]error[/code] (its [code]code[/code]: unknown_npc, text_too_long...)
## or one of the addon's: not_connected, invalid_npc_id, invalid_priority, text_too_long and
## message_too_large (a [method say] refused before it was sent), protocol_error, bad_message,
## launch_failed, daemon_exited, mic_unavailable, invalid_mode. [param turn_id] is -1 when no
## turn is concerned.
signal error_received(code: String, message: String, turn_id: int)
## Voice input: the player started speaking to [param npc_id]. With
## [code]npc_voice/voice/barge_in[/code] on, that NPC's voice has just been stopped.
signal player_speech_started(npc_id: String)
## Voice input: the utterance ended (key released, or a silence in open mic). [param turn_id]:
## the voice turn it started ([signal transcript_received] follows), or -1 if nothing was heard.
signal player_speech_ended(npc_id: String, turn_id: int)
## Voice input: what the player said (their subtitle). It starts turn [param turn_id], chosen by
## the daemon, which then goes on like a [method say] turn, up to [signal speech_finished].
signal transcript_received(turn_id: int, npc_id: String, text: String)
## A line of scene [param scene_id] begins: turn [param turn_id], spoken by [param npc_id] on
## its player once the scene's previous line has finished playing ([signal speech_started],
## [signal subtitle_received] and one [signal speech_finished] follow, as for any turn).
## [param answers_player]: it answers the player's [method say] into the scene, whose id it has.
signal scene_line_started(scene_id: int, turn_id: int, npc_id: String, answers_player: bool)
## Scene [param scene_id] is over, its last line played. [param reason]: "max_exchanges" (it
## said its lines), "scene_end" ([method end_scene]), "cancel" (a line was cancelled), "error"
## (a line failed, or the scene was refused), "disconnected". [param lines]: lines spoken.
signal scene_ended(scene_id: int, reason: String, lines: int)
#endregion

#region Constants
const Settings := preload("npc_voice_settings.gd")
const ZmtpConnection := preload("zmtp_connection.gd")
const TurnTable := preload("turn_table.gd")
const TurnState := preload("turn_state.gd")
const DefaultPlayer := preload("npc_voice_player.gd")
const DaemonLauncher := preload("daemon_launcher.gd")
const VoiceInput := preload("voice_input.gd")
const SceneTable := preload("scene_table.gd")
const TypingNotifier := preload("typing_notifier.gd")
const LocalChecks := preload("local_checks.gd")
const HelloMessage := preload("hello_message.gd")
## Wire protocol version (bridge_protocol/PROTOCOL.md).
const PROTOCOL_VERSION: int = 1
## Version of this addon, sent in [code]hello.client[/code].
const ADDON_VERSION: String = "0.1.0"
## Handshake errors that a reconnect cannot fix.
const FATAL_HANDSHAKE_ERRORS: Array = ["bad_token", "unsupported_protocol"]
## Once voice input or a scene is in use, a [method say] id skips this far past the largest id
## seen: the daemon may have given a voice turn or scene line an id not announced yet, and a
## [code]say[/code] must use a greater one (PROTOCOL.md 3.6, 3.8).
const VOICE_TURN_ID_GAP: int = 1000
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
## Stop an NPC's voice when the player starts speaking to it; from
## [code]npc_voice/voice/barge_in[/code].
var barge_in: bool = true
## Ask the daemon for word and viseme timing (the players' lip-sync signals); from
## [code]npc_voice/audio/lip_sync[/code]. Takes effect at the next connection.
var lip_sync: bool = true
#endregion

#region Private Variables
var _connection: ZmtpConnection = ZmtpConnection.new()
var _welcome: Dictionary = {}
var _default_player: Node = DefaultPlayer.new()
var _turns: TurnTable = null
var _voice_input: VoiceInput = VoiceInput.new(_connection.send_message)
var _launcher: DaemonLauncher = DaemonLauncher.new()
var _scenes: SceneTable = null
var _typing: TypingNotifier = TypingNotifier.new(_connection.send_message)
#endregion


#region Engine Callbacks
func _init() -> void:
	_turns = TurnTable.new(self, _default_player, _send, is_connected_to_daemon)
	_turns.subtitle_received.connect(subtitle_received.emit)
	_turns.speech_started.connect(speech_started.emit)
	_turns.speech_finished.connect(speech_finished.emit)  # before the scenes hear of it
	_turns.error_received.connect(error_received.emit)
	_scenes = SceneTable.new(_turns, _send, is_connected_to_daemon)
	_scenes.scene_line_started.connect(scene_line_started.emit)
	_scenes.scene_ended.connect(scene_ended.emit)
	_scenes.error_received.connect(error_received.emit)


func _ready() -> void:
	process_mode = Node.PROCESS_MODE_ALWAYS  # keep answering heartbeats while the game is paused
	process_priority = -100  # read the socket before the players feed their generators
	host = Settings.get_value(Settings.HOST)
	port = Settings.get_value(Settings.PORT)
	token = Settings.get_value(Settings.TOKEN)
	sample_rate_hz = Settings.get_value(Settings.SAMPLE_RATE_HZ)
	barge_in = Settings.get_value(Settings.VOICE_BARGE_IN)
	lip_sync = Settings.get_value(Settings.LIP_SYNC)
	_typing.debounce_ms = Settings.get_value(Settings.TYPING_DEBOUNCE_MS)
	_connection.connect_timeout_ms = Settings.get_value(Settings.CONNECT_TIMEOUT_MS)
	_connection.opened.connect(_on_connection_opened)
	_connection.closed.connect(_on_connection_closed)
	_connection.protocol_failed.connect(_on_protocol_failed)
	_connection.message_received.connect(_on_message_received)
	_default_player.name = "DefaultPlayer"
	_default_player.process_mode = Node.PROCESS_MODE_PAUSABLE
	add_child(_default_player)
	_voice_input.name = "VoiceInput"
	_voice_input.speech_started.connect(_on_player_speech_started)
	_voice_input.speech_ended.connect(_on_player_speech_ended)
	_voice_input.transcript_received.connect(_on_transcript_received)
	_voice_input.failed.connect(error_received.emit.bind(-1))
	add_child(_voice_input)
	if Settings.get_value(Settings.AUTO_LAUNCH):
		launch_daemon()
	if Settings.get_value(Settings.AUTO_CONNECT):
		connect_to_daemon()


func _process(_delta: float) -> void:
	_connection.poll()
	_typing.poll()
	if _launcher.exited():
		error_received.emit("daemon_exited", "the launched daemon process exited", -1)


func _exit_tree() -> void:
	_connection.close()
	stop_daemon()


#endregion


#region Public Functions
## Connects (or reconnects) to [member host]:[member port]; [signal connected] follows. On a
## live connection it is a disconnect first: turns in flight end with outcome "disconnected",
## [signal disconnected] is emitted and the microphone stops.
func connect_to_daemon() -> void:
	if not _welcome.is_empty():
		_connection.close()
		_on_connection_closed("reconnecting (connect_to_daemon)")
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
## [code]profile[/code], [code]sample_rate_hz[/code], [code]prebuffer_ms[/code],
## [code]language[/code] (BCP 47: "en", "pt-BR"...: replies and voice input; "en" if unsaid),
## [code]lip_sync[/code] ("visemes": words and visemes; "energy": a mouth-open value per block).
func get_npcs() -> Array[Dictionary]:
	var npcs: Array[Dictionary] = []
	for npc: Dictionary in _turns.npcs().values():
		var said: Dictionary = {"language": "en", "lip_sync": "energy"}
		npcs.append(said.merged(npc, true))
	return npcs


## Says the player's [param text] to [param npc_id]; returns the turn id. Options:
## [code]player[/code] (a voice player node to play through), [code]profile[/code] ("fast",
## "cinematic"...), [code]prebuffer_ms[/code] (override), [code]priority[/code] ("ambient" for
## barks and background chatter, which never delay the others; "normal", the default; "high"
## for a line the player waits for), [code]scene_id[/code] (the player speaks into that scene,
## to [param npc_id], one of its NPCs: the NPC speaking stops after its clause, and
## [param npc_id]'s answer is the next line, with this turn id; see [method start_scene]).
## A new turn for an NPC that is still talking interrupts it (barge-in): its audio stops at
## once. Always ends with exactly one [signal speech_finished], also when it cannot be sent:
## outcome "error" after [signal error_received] (not_connected; invalid_npc_id: not 1-64
## characters; invalid_priority; text_too_long: over the daemon's
## [code]limits.max_text_chars[/code]; message_too_large: over its
## [code]limits.max_message_bytes[/code]; unknown_scene: no such scene running, or
## [param npc_id] is not in it). A line refused that way interrupts nobody.
func say(npc_id: String, text: String, options: Dictionary = {}) -> int:
	var gap: bool = _voice_input.used or _scenes.used
	var turn_id: int = _turns.next_turn_id + (VOICE_TURN_ID_GAP if gap else 0)
	var message: Dictionary = {"type": "say", "turn_id": turn_id, "npc_id": npc_id, "text": text}
	if options.has("profile"):
		message["profile"] = str(options["profile"])
	var priority: String = TurnState.wire_priority(options)
	if priority != "":
		message["priority"] = priority  # "normal" is not sent: older daemons know no priority
	var scene: Variant = options.get("scene_id")
	if scene != null:
		message["scene_id"] = scene
	var frame: PackedByteArray = JSON.stringify(message).to_utf8_buffer()
	var problem: PackedStringArray = LocalChecks.say_problem(
		is_connected_to_daemon(), _welcome, npc_id, text, frame.size(), options
	)
	if problem.is_empty() and scene != null:
		problem = _scenes.say_problem(scene, npc_id)
	_typing.said(npc_id, text)
	if not problem.is_empty():
		_turns.reject_turn(turn_id, npc_id, problem[0], problem[1])
		return turn_id
	_turns.begin_turn(turn_id, npc_id, options, scene != null)  # a scene's line: deferred
	_scenes.add_say(scene, turn_id)
	var frames: Array[PackedByteArray] = [frame]
	_connection.send_message(frames)
	return turn_id


## Stops [param turn_id] at once (barge-in from the game): its audio stops now, the daemon
## stops generating, and [signal speech_finished] follows with outcome "cancelled".
func cancel(turn_id: int) -> void:
	_turns.cancel(turn_id)


## Streams the microphone (opened the first time, then kept open) to the daemon for
## [param npc_id] until [method stop_listening]. [param mode]: "push_to_talk" (the utterance
## is everything until [method stop_listening]: call it when the key is released) or
## "open_mic" (the daemon finds where each utterance starts and ends). [param options] as for
## [method say] ([code]player[/code], [code]profile[/code], [code]prebuffer_ms[/code],
## [code]priority[/code]), for the voice turns.
## Needs the project setting [code]audio/driver/enable_input[/code] and stereo output. Returns
## false, after [signal error_received] (not_connected, mic_unavailable, invalid_mode,
## invalid_npc_id, invalid_priority), when it cannot. A stream the daemon refuses stops by
## itself, with one [signal error_received] (voice_input_unavailable, unknown_npc,
## unknown_profile).
func start_listening(
	npc_id: String, mode: String = "push_to_talk", options: Dictionary = {}
) -> bool:
	if not is_connected_to_daemon():
		error_received.emit("not_connected", "not connected", -1)
		return false
	return _voice_input.start(npc_id, mode, options)


## Starts a scene: the NPCs [param npc_ids] (2 to 6 different ids) talk with each other, one at
## a time, the first one first, about [param situation], until [method end_scene] or
## [param max_exchanges] lines (1-200; -1: the daemon's [code][scenes] max_exchanges[/code]).
## Returns its id. Each line: [signal scene_line_started], then the turn's signals as for a
## [method say], on its NPC's player, once the previous line has played. The player joins in
## with [method say]'s option [code]scene_id[/code]. Ends with one [signal scene_ended]; with
## reason "error" on the next frame, after [signal error_received], when refused here
## (not_connected; bad_scene: not 2-6 NPCs, an NPC twice or unknown, a value out of range).
func start_scene(npc_ids: Array, situation: String = "", max_exchanges: int = -1) -> int:
	return _scenes.start(npc_ids, situation, max_exchanges)


## Ends scene [param scene_id] now: its line stops at once, nothing more is said, and
## [signal scene_ended] "scene_end" follows (the line's [signal speech_finished] "cancelled"
## first). Nothing happens for a scene that is over.
func end_scene(scene_id: int) -> void:
	_scenes.end(scene_id)


## The player is typing [param text] (so far) to [param npc_id]. Sent ([code]typing[/code]) once
## they pause for [code]npc_voice/typing/debounce_ms[/code]: the daemon prepares the reply, so
## that the line's [method say] starts sooner. Nothing goes out for a text already sent or said,
## a blank one, an NPC the daemon does not voice, or while not connected.
func notify_typing(npc_id: String, text: String) -> void:
	_typing.notify(npc_id, text)


## [method notify_typing] to [param npc_id] whenever [param line_edit]'s text changes (call it
## again to switch NPC). Its [code]text_submitted[/code] sends no typing: say the line yourself.
func attach_line_edit(line_edit: LineEdit, npc_id: String) -> void:
	_typing.attach(line_edit, npc_id)


## Stops [method attach_line_edit] for [param line_edit].
func detach_line_edit(line_edit: LineEdit) -> void:
	_typing.detach(line_edit)


## Closes the microphone stream: in push-to-talk mode the utterance ends here (the audio up to
## now is sent first). The OS microphone stays open, so that the next
## [method start_listening] (the next key press) hears the player at once; pass
## [param close_microphone] to release it (it is also released when the connection is lost).
func stop_listening(close_microphone: bool = false) -> void:
	_voice_input.stop(close_microphone)


## True between [method start_listening] and [method stop_listening] (or a lost connection).
func is_listening() -> bool:
	return _voice_input.is_listening()


## Client-side timings of a turn in flight (see [signal speech_finished]); empty when unknown.
func get_turn_timings(turn_id: int) -> Dictionary:
	return _turns.timings(turn_id)


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


func _handle_error(message: Dictionary) -> void:
	var code: String = str(message.get("code", ""))
	var turnless: bool = _turns.turn_of_error(message) < 0
	if turnless and _voice_input.handle_error(code):
		return  # a refused microphone stream's later blocks: reported once already
	if turnless and _scenes.handle_error(message):
		return  # a scene refused, or a scene_end that crossed the scene's end
	_turns.handle_error(message)
	if turnless and code in FATAL_HANDSHAKE_ERRORS:
		_connection.close()  # retrying with the same settings cannot help


func _handle_welcome(message: Dictionary) -> void:
	_welcome = message
	_typing.welcome = message
	var npcs: Variant = message.get("npcs", [])
	_turns.set_npcs(npcs if npcs is Array else [])
	connected.emit(message)


#endregion


#region Signal Handlers
func _on_connection_opened() -> void:
	_send(HelloMessage.build(PROTOCOL_VERSION, ADDON_VERSION, token, sample_rate_hz, lip_sync))


func _on_connection_closed(reason: String) -> void:
	var was_welcomed: bool = not _welcome.is_empty()
	_welcome = {}
	_voice_input.connection_lost()
	_scenes.connection_lost()
	_turns.connection_lost()
	_typing.clear()
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
			_turns.handle_subtitle(message)
		"timing":
			_turns.handle_timing(message)
		"audio_block":
			_turns.handle_audio(message, frames)
		"done", "cancelled":
			_turns.handle_terminal(message, str(message["type"]))
		"error":
			_handle_error(message)
		"speech_started", "speech_ended", "transcript":
			_voice_input.handle_message(message)
		"scene_line", "scene_cut", "scene_ended":
			_scenes.handle_message(message)
		_:
			pass  # message types added by later protocol versions


func _on_player_speech_started(npc_id: String) -> void:
	if barge_in:
		_turns.stop_npc(npc_id)  # heard at once; the daemon cancels the turn if it still runs
	player_speech_started.emit(npc_id)


func _on_player_speech_ended(npc_id: String, turn_id: int) -> void:
	_turns.next_turn_id = maxi(_turns.next_turn_id, turn_id + 1)
	player_speech_ended.emit(npc_id, turn_id)


func _on_transcript_received(turn_id: int, npc_id: String, text: String, end_usec: int) -> void:
	if turn_id >= 0 and not _turns.has_turn(turn_id):
		var turn: TurnState = _turns.begin_turn(turn_id, npc_id, _voice_input.turn_options())
		turn.sent_usec = mini(end_usec, turn.sent_usec)  # TTFA counts from the end of speech
	transcript_received.emit(turn_id, npc_id, text)
#endregion
