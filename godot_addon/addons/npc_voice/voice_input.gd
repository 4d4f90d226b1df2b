extends Node
## The voice-input half of the [code]NpcVoice[/code] autoload (PROTOCOL.md section 3.6): opens
## the connection's microphone stream ([code]listen_start[/code]), sends the blocks of
## [code]mic_capture.gd[/code] as [code]mic_audio[/code] messages (JSON header + s16le PCM,
## contiguous [code]seq[/code]), closes it ([code]listen_stop[/code]), and turns the daemon's
## [code]speech_started[/code], [code]speech_ended[/code] and [code]transcript[/code] into
## signals. The autoload owns the turns; [code]tests/raw_zmtp_client.py[/code]
## ([code]VoiceInput[/code]) mirrors this file.

#region Signals
## The daemon heard the player start speaking to [param npc_id].
signal speech_started(npc_id: String)
## The utterance ended; [param turn_id] is the voice turn it started, or -1.
signal speech_ended(npc_id: String, turn_id: int)
## The daemon's [code]transcript[/code]: a voice turn begins. [param speech_end_usec] is
## [method Time.get_ticks_usec] when the block holding the end of speech was sent.
signal transcript_received(turn_id: int, npc_id: String, text: String, speech_end_usec: int)
## Listening could not start: [param code] is mic_unavailable or invalid_mode.
signal failed(code: String, message: String)
#endregion

#region Constants
const Settings := preload("npc_voice_settings.gd")
const MicCapture := preload("mic_capture.gd")
## The two microphone modes of [code]listen_start[/code].
const MODES: Array = ["push_to_talk", "open_mic"]
## Block send times kept for [method usec_at_input_ms] (5 minutes of 100 ms blocks).
const MAX_MARKS: int = 3000
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
## the microphone; a stream already open is replaced. [param options]: [code]profile[/code] for
## the daemon, the rest ([code]player[/code], [code]prebuffer_ms[/code]) for the voice turns.
## Returns false after emitting [signal failed].
func start(npc_id: String, mode: String, options: Dictionary) -> bool:
	if mode not in MODES:
		failed.emit("invalid_mode", "mode must be push_to_talk or open_mic, not " + mode)
		return false
	var block_ms: int = Settings.get_value(Settings.VOICE_BLOCK_MS)
	_mic.block_samples = maxi(int(MicCapture.OUTPUT_RATE_HZ * block_ms / 1000.0), 1)
	var problem: String = _mic.start(str(Settings.get_value(Settings.VOICE_MIC_BUS)))
	if problem != "":
		failed.emit("mic_unavailable", problem)
		return false
	var message: Dictionary = {
		"type": "listen_start",
		"npc_id": npc_id,
		"mode": mode,
		"sample_rate_hz": MicCapture.OUTPUT_RATE_HZ
	}
	if options.has("profile"):
		message["profile"] = str(options["profile"])
	_npc_id = npc_id
	_options = options
	_seq = 0
	_sent_ms = 0.0
	_mark_ms = PackedFloat64Array()
	_mark_usec = PackedInt64Array()
	used = true
	_send_json(message)
	return true


## Sends what the microphone captured up to now, then closes the stream: in push-to-talk mode,
## the utterance ends here.
func stop() -> void:
	if _npc_id == "":
		return
	_mic.stop(true)  # the last, shorter block goes out before listen_stop
	_send_json({"type": "listen_stop"})
	_npc_id = ""


## True while a stream is open.
func is_listening() -> bool:
	return _npc_id != ""


## The options given to the last [method start] (they route its voice turns).
func turn_options() -> Dictionary:
	return _options


## The connection was lost: the daemon forgot the stream; stop the microphone.
func connection_lost() -> void:
	_mic.stop(false)
	_npc_id = ""
	used = false


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
	_seq += 1
	_sent_ms += samples * 1000.0 / MicCapture.OUTPUT_RATE_HZ
	if _mark_ms.size() >= MAX_MARKS:
		_mark_ms = _mark_ms.slice(MAX_MARKS >> 1)
		_mark_usec = _mark_usec.slice(MAX_MARKS >> 1)
	_mark_ms.append(_sent_ms)
	_mark_usec.append(Time.get_ticks_usec())
#endregion
