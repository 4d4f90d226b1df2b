@tool
extends RefCounted
## The addon's project settings, all under [code]npc_voice/[/code] (Project > Project Settings,
## "Advanced Settings" off shows them too). Registered by [code]plugin.gd[/code]; read by the
## [code]NpcVoice[/code] autoload at start, with these defaults when a key is missing.

#region Constants
## Daemon address (an IP address: the daemon listens on loopback by default).
const HOST: String = "npc_voice/connection/host"
## Daemon TCP port ([code][server] port[/code] in the daemon's config).
const PORT: String = "npc_voice/connection/port"
## Shared token, when the daemon's config sets one.
const TOKEN: String = "npc_voice/connection/token"
## Connect when the game starts.
const AUTO_CONNECT: String = "npc_voice/connection/auto_connect"
## A TCP connect plus handshake taking longer is abandoned and retried.
const CONNECT_TIMEOUT_MS: String = "npc_voice/connection/connect_timeout_ms"
## PCM rate to ask the daemon for; 0 = each voice's native rate (fewest samples to convert).
const SAMPLE_RATE_HZ: String = "npc_voice/audio/sample_rate_hz"
## Ask the daemon for word and viseme timing (lip sync: the voice players' word_started,
## viseme_changed and mouth_open_changed signals); a few small messages per sentence.
const LIP_SYNC: String = "npc_voice/audio/lip_sync"
## Start the daemon with the game (desktop only) and kill it on exit.
const AUTO_LAUNCH: String = "npc_voice/daemon/auto_launch"
## Executable to launch: a name on PATH, an absolute path, or a res:// path (editor runs).
const COMMAND: String = "npc_voice/daemon/command"
## Its arguments; [code]--port[/code] (and [code]--token[/code]) are added when missing.
const ARGUMENTS: String = "npc_voice/daemon/arguments"
## Audio bus the microphone is captured on; created (muted, with an AudioEffectCapture) when the
## project has no bus of that name.
const VOICE_MIC_BUS: String = "npc_voice/voice/mic_bus"
## Length of the microphone blocks sent to the daemon.
const VOICE_BLOCK_MS: String = "npc_voice/voice/block_ms"
## Stop an NPC's voice at once when the player starts speaking to it (open mic without a
## headset: turn this and the daemon's [code][asr] barge_in[/code] off).
const VOICE_BARGE_IN: String = "npc_voice/voice/barge_in"
## Pause after the player's last keystroke before the line typed so far goes to the daemon
## ([code]typing[/code]: it prepares the reply's prompt meanwhile); 0 = at the next frame.
const TYPING_DEBOUNCE_MS: String = "npc_voice/typing/debounce_ms"

## name, default, type, hint, hint_string of every setting.
const DEFINITIONS: Array = [
	[HOST, "127.0.0.1", TYPE_STRING, PROPERTY_HINT_NONE, ""],
	[PORT, 5557, TYPE_INT, PROPERTY_HINT_RANGE, "1,65535"],
	[TOKEN, "", TYPE_STRING, PROPERTY_HINT_PASSWORD, ""],
	[AUTO_CONNECT, true, TYPE_BOOL, PROPERTY_HINT_NONE, ""],
	[CONNECT_TIMEOUT_MS, 3000, TYPE_INT, PROPERTY_HINT_RANGE, "100,60000,1,suffix:ms"],
	[SAMPLE_RATE_HZ, 0, TYPE_INT, PROPERTY_HINT_RANGE, "0,192000,1,suffix:Hz"],
	[LIP_SYNC, true, TYPE_BOOL, PROPERTY_HINT_NONE, ""],
	[AUTO_LAUNCH, false, TYPE_BOOL, PROPERTY_HINT_NONE, ""],
	[COMMAND, "npc-voice", TYPE_STRING, PROPERTY_HINT_NONE, ""],
	[ARGUMENTS, ["serve"], TYPE_PACKED_STRING_ARRAY, PROPERTY_HINT_NONE, ""],
	[VOICE_MIC_BUS, "NpcVoiceMic", TYPE_STRING, PROPERTY_HINT_NONE, ""],
	[VOICE_BLOCK_MS, 100, TYPE_INT, PROPERTY_HINT_RANGE, "20,100,1,suffix:ms"],
	[VOICE_BARGE_IN, true, TYPE_BOOL, PROPERTY_HINT_NONE, ""],
	[TYPING_DEBOUNCE_MS, 200, TYPE_INT, PROPERTY_HINT_RANGE, "0,2000,1,suffix:ms"],
]
#endregion


#region Public Functions
## Adds every missing setting with its default and describes all of them to the editor.
static func register() -> void:
	for definition: Array in DEFINITIONS:
		var name: String = definition[0]
		var default: Variant = _default_of(definition)
		if not ProjectSettings.has_setting(name):
			ProjectSettings.set_setting(name, default)
		ProjectSettings.set_initial_value(name, default)
		ProjectSettings.set_as_basic(name, true)
		ProjectSettings.add_property_info(
			{
				"name": name,
				"type": definition[2],
				"hint": definition[3],
				"hint_string": definition[4]
			}
		)


## The value of setting [param name], or its default when the project does not have it.
static func get_value(name: String) -> Variant:
	for definition: Array in DEFINITIONS:
		if definition[0] == name:
			return ProjectSettings.get_setting(name, _default_of(definition))
	return ProjectSettings.get_setting(name)


#endregion


#region Private Functions
static func _default_of(definition: Array) -> Variant:
	if definition[2] == TYPE_PACKED_STRING_ARRAY:
		return PackedStringArray(definition[1])
	return definition[1]
#endregion
