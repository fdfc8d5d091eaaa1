//! `AzurePowerShellCredential`, which `azure_identity` 1.x lacks: runs `pwsh` with
//! `Get-AzAccessToken` the way the other Azure SDKs do (an encoded script, the token printed as
//! `azsdk%<token>%<unix seconds>`), including Az.Accounts 5's SecureString tokens.

use std::ffi::OsStr;

use async_trait::async_trait;
use base64::Engine;

use super::AccessToken;
use super::chain::{CredentialStep, StepError};
use super::process::ToolRunner;
use crate::secrets::Secret;

fn script(resource: &str) -> String {
    format!(
        r#"$ErrorActionPreference = 'Stop'
[version]$minimumVersion = '2.2.0'
$m = Import-Module Az.Accounts -MinimumVersion $minimumVersion -PassThru -ErrorAction SilentlyContinue
if (! $m) {{ Write-Output NO_AZ_ACCOUNT_MODULE; exit }}
$params = @{{ 'ResourceUrl' = '{resource}'; 'WarningAction' = 'Ignore' }}
if ($m.Version -ge [version]'2.17.0' -and $m.Version -lt [version]'5.0.0') {{ $params['AsSecureString'] = $true }}
$token = Get-AzAccessToken @params
$tokenValue = $token.Token
if ($tokenValue -is [System.Security.SecureString]) {{
  if ($PSVersionTable.PSVersion.Major -lt 7) {{
    $ssPtr = [System.Runtime.InteropServices.Marshal]::SecureStringToBSTR($tokenValue)
    try {{ $tokenValue = [System.Runtime.InteropServices.Marshal]::PtrToStringBSTR($ssPtr) }}
    finally {{ [System.Runtime.InteropServices.Marshal]::ZeroFreeBSTR($ssPtr) }}
  }} else {{ $tokenValue = $tokenValue | ConvertFrom-SecureString -AsPlainText }}
}}
Write-Output "`nazsdk%$($tokenValue)%$($token.ExpiresOn.ToUnixTimeSeconds())`n"
"#
    )
}

/// PowerShell's `-EncodedCommand`: base64 of the UTF-16LE script.
pub fn encode_command(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(utf16)
}

pub fn parse_output(stdout: &str) -> Result<AccessToken, StepError> {
    if stdout.contains("NO_AZ_ACCOUNT_MODULE") {
        return Err(StepError::Unavailable(
            "the Az.Accounts module (>= 2.2.0) is not installed".into(),
        ));
    }
    let line = stdout
        .split_whitespace()
        .find(|l| l.starts_with("azsdk%"))
        .ok_or_else(|| StepError::Unavailable("pwsh printed no token".into()))?;
    let mut parts = line.splitn(3, '%').skip(1);
    let (Some(token), Some(expires)) = (parts.next(), parts.next()) else {
        return Err(StepError::Unavailable(
            "pwsh printed a malformed token line".into(),
        ));
    };
    let expires: i64 = expires
        .trim()
        .parse()
        .map_err(|_| StepError::Unavailable("pwsh printed a malformed expiry".into()))?;
    Ok(AccessToken {
        token: Secret::new(token),
        expires_on_ms: expires * 1000,
    })
}

#[derive(Default)]
pub struct AzurePowerShellStep {
    pub runner: ToolRunner,
}

#[async_trait]
impl CredentialStep for AzurePowerShellStep {
    fn name(&self) -> &'static str {
        "AzurePowerShellCredential"
    }

    async fn get_token(&self, scope: &str, _: Option<&str>) -> Result<AccessToken, StepError> {
        let resource = scope.trim_end_matches("/.default");
        if !resource
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:/".contains(c))
        {
            return Err(StepError::Failed(format!("invalid scope '{scope}'")));
        }
        let encoded = encode_command(&script(resource));
        let args: [&OsStr; 4] = [
            "-NoProfile".as_ref(),
            "-NonInteractive".as_ref(),
            "-EncodedCommand".as_ref(),
            encoded.as_ref(),
        ];
        let output = self
            .runner
            .output("pwsh".as_ref(), &args, &[("POWERSHELL_UPDATECHECK", "Off")])
            .await;
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StepError::Unavailable(
                    "pwsh (PowerShell 7) is not installed".into(),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(StepError::Unavailable(format!("pwsh: {e}")));
            }
            Err(e) => return Err(StepError::Unavailable(format!("could not run pwsh: {e}"))),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let reason = if stderr.contains("Connect-AzAccount") {
                "not logged in: run Connect-AzAccount".to_string()
            } else {
                format!("pwsh exited with {}: {}", output.status, stderr.trim())
            };
            return Err(StepError::Unavailable(reason));
        }
        parse_output(&String::from_utf8_lossy(&output.stdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_token_line_and_the_missing_module() {
        let token = parse_output("WARNING: x\n\nazsdk%eyJ0eXAi.abc%1767225600\n").unwrap();
        assert_eq!(
            (token.token.expose(), token.expires_on_ms),
            ("eyJ0eXAi.abc", 1_767_225_600_000)
        );
        assert!(matches!(
            parse_output("NO_AZ_ACCOUNT_MODULE"),
            Err(StepError::Unavailable(_))
        ));
    }

    #[test]
    fn encodes_utf16le_base64() {
        assert_eq!(encode_command("ab"), "YQBiAA==");
    }
}
