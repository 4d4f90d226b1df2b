extends RefCounted
## A ZeroMQ DEALER in pure GDScript: ZMTP 3.1 (NULL mechanism) over [StreamPeerTCP].
##
## Non-blocking: nothing happens unless [method poll] is called, once per frame (the
## [code]NpcVoice[/code] autoload does it from [code]_process[/code]). It sends its greeting
## and READY at once when TCP connects, answers PING with PONG, pings a silent daemon itself,
## gives up a connect or handshake after [member connect_timeout_ms], and reconnects with
## exponential backoff (100 ms doubling to 2 s, with jitter) after the daemon goes away.
## Byte layouts live in [code]zmtp_codec.gd[/code]. [code]test/e2e/fake_peers.gd[/code] runs it
## against peers that are not the daemon (tests/test_godot_connection.py).

#region Signals
## The handshake completed: messages can flow.
signal opened
## An open connection was lost (EOF, socket error, heartbeat timeout); a reconnect follows
## unless [member auto_reconnect] is false or [method close] was called.
signal closed(reason: String)
## The peer is not a ZMTP 3 NULL ROUTER (e.g. another program owns the port). Reported once
## per outage. [param fatal] is true when the daemon sent ERROR: no reconnect follows.
signal protocol_failed(reason: String, fatal: bool)
## A complete message: its frames in order (one for control, two for audio).
signal message_received(frames: Array[PackedByteArray])
#endregion

#region Enums
## Where the connection stands.
enum State {
	IDLE,  ## Not connected and not trying.
	CONNECTING,  ## TCP connect in progress.
	HANDSHAKING,  ## Greeting and READY being exchanged.
	OPEN,  ## Ready for messages.
	WAITING,  ## Backing off before the next attempt.
	FAILED,  ## The daemon refused us with ERROR; [method connect_to] again to retry.
}
#endregion

#region Constants
const Codec := preload("zmtp_codec.gd")
## Our socket type, sent in READY.
const SOCKET_TYPE: String = "DEALER"
## The only peer socket type accepted.
const PEER_SOCKET_TYPE: String = "ROUTER"
#endregion

#region Public Variables
## A TCP connect plus handshake taking longer than this is abandoned (then retried).
var connect_timeout_ms: int = 3000
## Send our own PING after this long without hearing from the daemon (0 = never).
var heartbeat_ivl_ms: int = 2000
## Drop the connection after this long without any byte from the daemon.
var heartbeat_timeout_ms: int = 10000
## First reconnect delay; doubles per failed attempt.
var backoff_min_ms: int = 100
## Longest reconnect delay.
var backoff_max_ms: int = 2000
## Reconnect after a loss or a failed attempt.
var auto_reconnect: bool = true
## Largest frame accepted from the daemon (its PCM frames are a few KiB).
var max_frame_bytes: int = 4 * 1024 * 1024
## Current [enum State].
var state: State = State.IDLE
## Failed attempts since the last successful handshake.
var attempt: int = 0
#endregion

#region Private Variables
var _tcp: StreamPeerTCP = null
var _host: String = ""
var _port: int = 0
var _rx: PackedByteArray = PackedByteArray()
var _rx_pos: int = 0
var _tx: PackedByteArray = PackedByteArray()
var _greeting_received: bool = false
var _parts: Array[PackedByteArray] = []
var _deadline_ms: int = 0
var _retry_at_ms: int = 0
var _last_rx_ms: int = 0
var _last_ping_ms: int = 0
var _error_reported: bool = false
var _rng: RandomNumberGenerator = RandomNumberGenerator.new()
#endregion


#region Engine Callbacks
func _init() -> void:
	_rng.randomize()


#endregion


#region Public Functions
## Starts connecting to [param host]:[param port] (an IP address; the daemon listens on
## 127.0.0.1). Drops any current connection first.
func connect_to(host: String, port: int) -> void:
	_close_socket()
	_host = host
	_port = port
	attempt = 0
	_error_reported = false
	_start_connect()


## Closes the connection and stops reconnecting. Emits nothing.
func close() -> void:
	_close_socket()
	state = State.IDLE


## True when messages can be sent.
func is_open() -> bool:
	return state == State.OPEN


## Advances connecting, handshake, reading, heartbeats and backoff. Call once per frame.
func poll() -> void:
	var now: int = Time.get_ticks_msec()
	match state:
		State.WAITING:
			if now >= _retry_at_ms:
				_start_connect()
		State.CONNECTING:
			_advance_connecting(now)
		State.HANDSHAKING, State.OPEN:
			_advance_stream(now)


## Queues a message (its frames in order) and starts sending it at once. Returns false when
## the connection is not open.
func send_message(frames: Array[PackedByteArray]) -> bool:
	if state != State.OPEN:
		return false
	_tx.append_array(Codec.encode_message(frames))
	_flush_tx()
	return true


## Sends our own PING (answered by the daemon with a PONG echoing [param context]).
func send_ping(context: PackedByteArray = PackedByteArray()) -> void:
	if state == State.OPEN:
		var ttl_ds: int = clampi(int(heartbeat_timeout_ms / 100.0), 0, 0xFFFF)
		_tx.append_array(Codec.ping_command(ttl_ds, context))
		_flush_tx()


#endregion


#region Private Functions
func _start_connect() -> void:
	_close_socket()
	_tcp = StreamPeerTCP.new()
	_deadline_ms = Time.get_ticks_msec() + connect_timeout_ms
	state = State.CONNECTING
	var error: Error = _tcp.connect_to_host(_host, _port)
	if error != OK:
		_drop("cannot connect to %s:%d (%s)" % [_host, _port, error_string(error)])


func _advance_connecting(now: int) -> void:
	_tcp.poll()
	var status: int = _tcp.get_status()
	if status == StreamPeerTCP.STATUS_CONNECTED:
		_tcp.set_no_delay(true)  # small control messages must not wait for Nagle
		_rx = PackedByteArray()
		_rx_pos = 0
		_parts.clear()
		_greeting_received = false
		_last_rx_ms = now
		_last_ping_ms = now
		_tx = Codec.greeting()  # all 64 bytes at once: waiting for the peer's deadlocks
		_tx.append_array(Codec.ready_command(SOCKET_TYPE))
		state = State.HANDSHAKING
		_advance_stream(now)
	elif status != StreamPeerTCP.STATUS_CONNECTING:
		_drop("cannot connect to %s:%d" % [_host, _port])
	elif now >= _deadline_ms:
		_drop("connecting to %s:%d timed out" % [_host, _port])


func _advance_stream(now: int) -> void:
	_tcp.poll()  # notices EOF: the status leaves STATUS_CONNECTED once the data is read
	if _tcp.get_status() != StreamPeerTCP.STATUS_CONNECTED:
		_drop("the daemon closed the connection")
		return
	_flush_tx()
	if state == State.IDLE or state == State.WAITING:
		return
	if not _receive(now):
		return
	_parse()
	if state == State.HANDSHAKING and now >= _deadline_ms:
		_drop("no ZMTP handshake from %s:%d within %d ms" % [_host, _port, connect_timeout_ms])
	elif state == State.OPEN:
		_check_heartbeat(now)


func _flush_tx() -> void:
	if _tx.is_empty() or _tcp == null:
		return
	var result: Array = _tcp.put_partial_data(_tx)
	if result[0] != OK:
		_drop("send failed (%s)" % error_string(result[0]))
		return
	var sent: int = result[1]
	_tx = _tx.slice(sent) if sent < _tx.size() else PackedByteArray()


func _receive(now: int) -> bool:
	var available: int = _tcp.get_available_bytes()
	if available <= 0:
		return true
	var result: Array = _tcp.get_partial_data(available)
	if result[0] != OK:
		_drop("receive failed (%s)" % error_string(result[0]))
		return false
	var data: PackedByteArray = result[1]
	_rx.append_array(data)
	_last_rx_ms = now
	return true


func _parse() -> void:
	if not _greeting_received:
		var problem: String = Codec.check_greeting(_rx.slice(0, Codec.GREETING_SIZE))
		if problem != "":
			_protocol_error(problem)
			return
		if _rx.size() < Codec.GREETING_SIZE:
			return
		_greeting_received = true
		_rx_pos = Codec.GREETING_SIZE
	while state == State.HANDSHAKING or state == State.OPEN:
		var frame: Codec.Frame = Codec.decode_frame(_rx, _rx_pos, max_frame_bytes)
		if frame == null:
			break
		if frame.error != "":
			_protocol_error(frame.error)
			return
		_rx_pos += frame.wire_size
		if frame.is_command():
			_handle_command(frame.body)
		else:
			_handle_data(frame)
	if state != State.HANDSHAKING and state != State.OPEN:
		return  # a handler closed the connection; _rx was reset
	if _rx_pos >= _rx.size():
		_rx = PackedByteArray()
		_rx_pos = 0
	elif _rx_pos > 65536:
		_rx = _rx.slice(_rx_pos)
		_rx_pos = 0


func _handle_command(body: PackedByteArray) -> void:
	var command: Codec.Command = Codec.parse_command(body)
	if command.error != "":
		_protocol_error(command.error)
		return
	match command.name:
		"READY":
			_handle_ready(command.data)
		"ERROR":
			_fail("the daemon refused the connection: %s" % Codec.error_reason(command.data))
		"PING":
			_tx.append_array(Codec.pong_for_ping(command.data))
			_flush_tx()
		_:
			pass  # PONG and unknown commands need no answer


func _handle_ready(data: PackedByteArray) -> void:
	if state != State.HANDSHAKING:
		_protocol_error("READY received twice")
		return
	var properties: Dictionary = Codec.parse_properties(data)
	var peer_type: String = ""
	if properties.has("Socket-Type"):
		var value: PackedByteArray = properties["Socket-Type"]
		peer_type = value.get_string_from_ascii()
	if peer_type != PEER_SOCKET_TYPE:
		_protocol_error("the peer is a %s socket, expected ROUTER" % peer_type)
		return
	state = State.OPEN
	attempt = 0
	_error_reported = false
	opened.emit()


func _handle_data(frame: Codec.Frame) -> void:
	if state != State.OPEN:
		_protocol_error("message frame before the handshake completed")
		return
	_parts.append(frame.body)
	if not frame.has_more():
		var frames: Array[PackedByteArray] = _parts
		_parts = []
		message_received.emit(frames)


func _check_heartbeat(now: int) -> void:
	var silent_ms: int = now - _last_rx_ms
	if heartbeat_timeout_ms > 0 and silent_ms >= heartbeat_timeout_ms:
		_drop("no data from the daemon for %d ms" % silent_ms)
	elif heartbeat_ivl_ms > 0 and silent_ms >= heartbeat_ivl_ms:
		if now - _last_ping_ms >= heartbeat_ivl_ms:
			_last_ping_ms = now
			send_ping()


## Transient failure: close, tell the listeners if it was open, and schedule a retry.
func _drop(reason: String) -> void:
	var was_open: bool = state == State.OPEN
	_close_socket()
	if auto_reconnect:
		state = State.WAITING
		_retry_at_ms = Time.get_ticks_msec() + _backoff_delay_ms(attempt)
		attempt += 1
	else:
		state = State.IDLE
	if was_open:
		closed.emit(reason)


## The peer speaks something else: report it once per outage, then treat it as a drop.
func _protocol_error(reason: String) -> void:
	var report: bool = not _error_reported
	_error_reported = true
	_drop(reason)
	if report:
		protocol_failed.emit(reason, false)


## The daemon sent ERROR: retrying with the same settings cannot help.
func _fail(reason: String) -> void:
	var was_open: bool = state == State.OPEN
	_close_socket()
	state = State.FAILED
	if was_open:
		closed.emit(reason)
	protocol_failed.emit(reason, true)


## Delay before reconnect attempt number [param failures] (0-based): 100 ms doubling to 2 s,
## minus up to 25 % jitter so that many clients do not retry in lockstep.
func _backoff_delay_ms(failures: int) -> int:
	var base: int = mini(backoff_max_ms, backoff_min_ms << mini(failures, 20))
	return int(base * _rng.randf_range(0.75, 1.0))


func _close_socket() -> void:
	if _tcp != null:
		_tcp.disconnect_from_host()
		_tcp = null
	_tx = PackedByteArray()
	_rx = PackedByteArray()
	_rx_pos = 0
	_parts.clear()
	_greeting_received = false
#endregion
