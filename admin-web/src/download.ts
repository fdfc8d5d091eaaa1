/**
 * Saves a Blob as a file: an object URL on a temporary <a download>. Used for answers that need
 * the admin token's header, which a plain link cannot send.
 */
export function saveBlob(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.rel = 'noopener';
  link.style.display = 'none';
  document.body.appendChild(link);
  link.click();
  link.remove();
  // Revoked later, not at once: the browser reads the URL after click() returns.
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
