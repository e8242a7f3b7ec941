package scep

import (
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
)

// oidMSErrorCode is the attribute Microsoft's NDES adds to a FAILURE in
// place of RFC 8894's failInfoText: the Windows HRESULT of the failure as a
// signed decimal in a PrintableString (e.g. "-2147024809", E_INVALIDARG;
// seen in a real Windows Server 2012 reply, sscep issue 59).
var oidMSErrorCode = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 33}

// HResult is a Windows error code (HRESULT) as NDES sends it with a
// FAILURE. Zero means none was sent.
type HResult int32

// Codes NDES and the CA behind it answer with, as far as they are known.
const (
	// HResultInvalidArg is E_INVALIDARG.
	HResultInvalidArg HResult = -2147024809 // 0x80070057
	// HResultInvalidPassword is HRESULT_FROM_WIN32(ERROR_INVALID_PASSWORD).
	HResultInvalidPassword HResult = -2147024810 // 0x80070056
	// HResultWrongPassword is HRESULT_FROM_WIN32(ERROR_WRONG_PASSWORD).
	HResultWrongPassword HResult = -2147023573 // 0x8007052B
	// HResultTemplateDenied is CERTSRV_E_TEMPLATE_DENIED.
	HResultTemplateDenied HResult = -2146877422 // 0x80094012
	// HResultEnrollDenied is CERTSRV_E_ENROLL_DENIED.
	HResultEnrollDenied HResult = -2146877423 // 0x80094011
	// HResultAdminDenied is CERTSRV_E_ADMIN_DENIED_REQUEST.
	HResultAdminDenied HResult = -2146877420 // 0x80094014
	// HResultCAUnavailable is HRESULT_FROM_WIN32(RPC_S_SERVER_UNAVAILABLE).
	HResultCAUnavailable HResult = -2147023174 // 0x800706BA
)

// hresultMeanings say in words what the common codes mean for whoever
// runs the profile. Codes not listed are shown as their hex value, which
// is what Windows documentation and NDES's event log use.
var hresultMeanings = map[HResult]string{
	HResultInvalidArg:      "NDES found the request invalid (E_INVALIDARG)",
	HResultInvalidPassword: "the challenge password was refused: wrong, already used or expired (NDES passwords are single-use and expire after PasswordValidity, 60 minutes by default)",
	HResultWrongPassword:   "the challenge password was refused: wrong, already used or expired (NDES passwords are single-use and expire after PasswordValidity, 60 minutes by default)",
	HResultTemplateDenied:  "the CA does not let NDES's service account enroll with the certificate template (give it Read and Enroll on the template)",
	HResultEnrollDenied:    "the CA denied enrollment (CERTSRV_E_ENROLL_DENIED)",
	HResultAdminDenied:     "a CA manager denied the request",
	HResultCAUnavailable:   "NDES cannot reach the CA (RPC server unavailable): check that the CA service runs and NDES can reach it",
	hr(0x80094001):         "the CA refused the request's subject (CERTSRV_E_BAD_REQUESTSUBJECT)",
	hr(0x80094800):         "the CA does not issue the certificate template NDES asked for (CERTSRV_E_UNSUPPORTED_CERT_TYPE): publish it on the CA",
	hr(0x80094811):         "the key is shorter than the certificate template's minimum key size (CERTSRV_E_KEY_LENGTH)",
	hr(0x80090005):         "NDES could not decrypt or read the request (NTE_BAD_DATA)",
	hr(0x80070005):         "access denied (E_ACCESSDENIED)",
}

// hr is the HResult of an HRESULT written in hex, as Windows documents it.
func hr(u uint32) HResult { return HResult(int32(u)) }

// parseHResult reads the attribute's text: a signed decimal as NDES writes
// it, or the same number unsigned. Anything else is no code.
func parseHResult(s string) HResult {
	s = strings.TrimSpace(s)
	if len(s) > 16 {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < -1<<31 || v >= 1<<32 {
		return 0
	}
	return HResult(int32(uint32(v)))
}

// String is the code as Windows shows it, e.g. 0x80070057.
func (h HResult) String() string { return fmt.Sprintf("0x%08X", uint32(h)) }

// Meaning says in words what the code means, or "" for a code we do not
// know.
func (h HResult) Meaning() string { return hresultMeanings[h] }
