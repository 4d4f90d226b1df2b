extends RefCounted
## The [code]hello[/code] the [code]NpcVoice[/code] autoload sends once the ZMTP handshake is
## done (PROTOCOL.md 3.1): the protocol version, who the client is, the shared token, and the
## options it asks for: a PCM rate, lip-sync timing (section 3.9).


#region Public Functions
## The [code]hello[/code] message of protocol [param protocol] from addon version
## [param addon_version]: [param sample_rate_hz] 0 asks for each voice's native rate (no field
## sent); [param timing] asks for [code]timing[/code] messages (not sent when false, so a daemon
## older than lip sync gets the message it knows).
static func build(
	protocol: int, addon_version: String, token: String, sample_rate_hz: int, timing: bool
) -> Dictionary:
	var hello: Dictionary = {
		"type": "hello",
		"protocol": protocol,
		"client": "godot-%s npc_voice/%s" % [Engine.get_version_info()["string"], addon_version],
		"token": token,
	}
	if sample_rate_hz > 0:
		hello["sample_rate_hz"] = sample_rate_hz
	if timing:
		hello["timing"] = true
	return hello
#endregion
