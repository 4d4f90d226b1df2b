extends Node
## The voice-input half of the [code]NpcVoice[/code] autoload (PROTOCOL.md section 3.6): opens
## the connection's microphone stream ([code]listen_start[/code]), sends the blocks of
## [code]mic_capture.gd[/code] as [code]mic_audio[/code] messages (JSON header + s16le PCM,
## contiguous [code]seq[/code]), closes it ([code]listen_stop[/code]), and turns the daemon's
## [code]speech_started[/code], [code]speech_ended[/code] and [code]transcript[/code] into
## signals. When the daemon refuses the stream (voice input off, unknown NPC or profile), the
## microphone stops at once and only the first error is reported: the refusals of the blocks
## already on their way are expected and dropped. The autoload owns the turns.

#region Signals
## The daemon heard the player start speaking to [param npc_id].
signal speech_started(npc_id: String)
## The utterance ended; [param turn_id] is the voice turn it started, or -1.
signal speech_ended(npc_id: String, turn_id: int)
## The daemon's [code]transcript[/code]: a voice turn begins. [param speech_end_usec] is
## [method Time.get_ticks_usec] when the block holding the end of speech was sent.
signal transcript_received(turn_id: int, npc_id: String, text: String, speech_end_usec: int)
## Listening could not start: [param code] is mic_unavailable, invalid_mode, invalid_npc_id or
## invalid_priority.
signal failed(code: String, message: String)
#endregion

#region Constants
const Settings := preload("npc_voice_settings.gd")
const MicCapture := preload("mic_capture.gd")
const TurnState := preload("turn_state.gd")
## The two microphone modes of [code]listen_start[/code].
const MODES: Array = ["push_to_talk", "open_mic"]
## Block send times kept for [method usec_at_input_ms] (5 minutes of 100 ms blocks).
const MAX_MARKS: int = 3000
## Longest [code]npc_id[/code] the daemon accepts (PROTOCOL.md 3.1).
const MAX_NPC_ID_CHARS: int = 64
## Errors (without a turn) by which the daemon refuses the microphone stream: for
## [code]listen_start[/code] (the first two also for every later block of a refused stream).
const REFUSALS: Array = [
	"voice_input_unavailable", "not_listening", "unknown_npc", "unknown_profile"
]
## Errors that answer each block (and [code]listen_stop[/code]) sent on a refused stream.
const ECHOED_REFUSALS: Array = ["voice_input_unavailable", "not_listening"]
#endregion

#region Public Variables
## True once a stream was opened on the current connection: the daemon may then choose turn
## ids the client has not heard of yet (see [code]npc_voice_client.gd[/code]).
var used: bool = false
#endregion

#region Private Variables
var _send: Callable
var _mic: MicCapture = MicCapture.new()
var _npc_id: String = ""
var _options: Dictionary = {}
var _seq: int = 0
var _sent_ms: float = 0.0
var _mark_ms: PackedFloat64Array = PackedFloat64Array()
var _mark_usec: PackedInt64Array = PackedInt64Array()
var _sent_since_start: int = 0
var _refusable: bool = false
var _echoes_expected: int = 0
#endregion


#region Engine Callbacks
## [param send] is the connection's [code]send_message(frames) -> bool[/code].
func _init(send: Callable) -> void:
	_send = send


func _ready() -> void:
	_mic.name = "MicCapture"
	_mic.block_captured.connect(_on_block_captured)
	add_child(_mic)


#endregion


#region Public Functions
## Opens the stream for [param npc_id] ([param mode] "push_to_talk" or "open_mic") and starts
## the microphone; a stream already open is replaced. [param options]: [code]profile[/code] and
## [code]priority[/code] for the daemon, the rest ([code]player[/code],
## [code]prebuffer_ms[/code]) for the voice turns. Returns false after emitting [signal failed].
func start(npc_id: String, mode: String, options: Dictionary) -> bool:
	if mode not in MODES:
		failed.emit("invalid_mode", "mode must be push_to_talk or open_mic, not " + mode)
		return false
	if npc_id.length() < 1 or npc_id.length() > MAX_NPC_ID_CHARS:
		failed.emit("invalid_npc_id", "npc_id must have 1 to %d characters" % MAX_NPC_ID_CHARS)
		return false
	var priority_problem: String = TurnState.priority_problem(options)
	if priority_problem != "":
		failed.emit("invalid_priority", priority_problem)
		return false
	var block_ms: int = Settings.get_value(Settings.VOICE_BLOCK_MS)
	_mic.block_samples = maxi(int(MicCapture.OUTPUT_RATE_HZ * block_ms / 1000.0), 1)
	var problem: String = _mic.open(str(Settings.get_value(Settings.VOICE_MIC_BUS)))
	if problem != "":
		failed.emit("mic_unavailable", problem)
		return false
	_mic.start()
	var message: Dictionary = {
		"type": "listen_start",
		"npc_id": npc_id,
		"mode": mode,
		"sample_rate_hz": MicCapture.OUTPUT_RATE_HZ
	}
	if options.has("profile"):
		message["profile"] = str(options["profile"])
	var priority: String = TurnState.wire_priority(options)
	if priority != "":
		message["priority"] = priority  # "normal" is not sent: older daemons know no priority
	_npc_id = npc_id
	_options = options
	_seq = 0
	_sent_ms = 0.0
	_mark_ms = PackedFloat64Array()
	_mark_usec = PackedInt64Array()
	used = true
	_send_json(message)
	_sent_since_start = 0
	_refusable = true
	return true


## Sends what the microphone captured up to now, then closes the stream: in push-to-talk mode,
## the utterance ends here. The microphone itself stays open (the next [method start] needs no
## driver start-up) unless [param close_microphone].
func stop(close_microphone: bool = false) -> void:
	if _npc_id != "":
		_mic.stop(true)  # the last, shorter block goes out before listen_stop
		_send_json({"type": "listen_stop"})
		_sent_since_start += 1
		_npc_id = ""
	if close_microphone:
		_mic.close()


## True while a stream is open.
func is_listening() -> bool:
	return _npc_id != ""


## The options given to the last [method start] (they route its voice turns).
func turn_options() -> Dictionary:
	return _options


## The connection was lost: the daemon forgot the stream; stop the microphone.
func connection_lost() -> void:
	_mic.close()
	_npc_id = ""
	used = false
	_refusable = false
	_echoes_expected = 0


## Handles a daemon [code]error[/code] that names no turn; returns true when it must not be
## reported: the refusal of a block sent before the stream's refusal arrived. The first refusal
## of a stream stops the microphone (it is reported).
func handle_error(code: String) -> bool:
	if code in ECHOED_REFUSALS and _echoes_expected > 0:
		_echoes_expected -= 1
		return true
	if not _refusable or code not in REFUSALS:
		return false
	# The daemon answers listen_start first, then each message sent after it; a not_listening
	# answers the first of those.
	_echoes_expected += _sent_since_start - (1 if code == "not_listening" else 0)
	_refusable = false
	_mic.close()
	_npc_id = ""
	return false


## Handles [code]speech_started[/code], [code]speech_ended[/code] and [code]transcript[/code].
func handle_message(message: Dictionary) -> void:
	var npc_id: String = str(message.get("npc_id", ""))
	match str(message.get("type", "")):
		"speech_started":
			speech_started.emit(npc_id)
		"speech_ended":
			speech_ended.emit(npc_id, _int_field(message, "turn_id"))
		"transcript":
			var end_ms: Variant = message.get("speech_end_ms", 0.0)
			transcript_received.emit(
				_int_field(message, "turn_id"),
				npc_id,
				str(message.get("text", "")),
				usec_at_input_ms(float(end_ms) if end_ms is float or end_ms is int else 0.0)
			)


## When the block holding input time [param input_ms] (ms of audio since the stream opened) was
## sent, as [method Time.get_ticks_usec]; now if unknown.
func usec_at_input_ms(input_ms: float) -> int:
	var index: int = _mark_ms.bsearch(input_ms)
	if index >= _mark_usec.size():
		return Time.get_ticks_usec()
	return _mark_usec[index]


#endregion


#region Private Functions
func _send_json(message: Dictionary) -> void:
	var frames: Array[PackedByteArray] = [JSON.stringify(message).to_utf8_buffer()]
	_send.call(frames)


static func _int_field(message: Dictionary, key: String) -> int:
	var value: Variant = message.get(key)
	if value is float or value is int:
		return int(value)
	return -1


#endregion


#region Signal Handlers
func _on_block_captured(pcm: PackedByteArray) -> void:
	if _npc_id == "":
		return
	var samples: int = pcm.size() >> 1
	var header: Dictionary = {"type": "mic_audio", "seq": _seq, "sample_count": samples}
	var frames: Array[PackedByteArray] = [JSON.stringify(header).to_utf8_buffer(), pcm]
	_send.call(frames)
	_sent_since_start += 1
	_seq += 1
	_sent_ms += samples * 1000.0 / MicCapture.OUTPUT_RATE_HZ
	if _mark_ms.size() >= MAX_MARKS:
		_mark_ms = _mark_ms.slice(MAX_MARKS >> 1)
		_mark_usec = _mark_usec.slice(MAX_MARKS >> 1)
	_mark_ms.append(_sent_ms)
	_mark_usec.append(Time.get_ticks_usec())
#endregion
